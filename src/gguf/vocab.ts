// The built-in SentencePiece-style ("llama" tokenizer model) vocabulary of generated models.
// Nothing is downloaded: pieces are derived from an embedded English word list.
//
// llama.cpp's SPM tokenizer starts from single characters and repeatedly merges the adjacent
// pair with the highest score whose concatenation is a vocabulary piece. A word therefore only
// becomes one token if every intermediate merge is a piece too, so each word variant is added
// with all of its prefixes ("▁h", "▁he", "▁hel", …). Shorter pieces get higher scores, like the
// merge ranks of a trained BPE model.

import { LlamaTokenType } from './types.js';

export const UNK_TOKEN_ID = 0;
export const BOS_TOKEN_ID = 1;
export const EOS_TOKEN_ID = 2;
const FIRST_BYTE_TOKEN_ID = 3;
export const IM_START_TOKEN_ID = FIRST_BYTE_TOKEN_ID + 256;
export const IM_END_TOKEN_ID = IM_START_TOKEN_ID + 1;

export const IM_START = '<|im_start|>';
export const IM_END = '<|im_end|>';
/** SentencePiece's visible space. */
export const SPACE_MARK = '\u2581';

/** ChatML, which llama.cpp recognizes by its <|im_start|> marker. BOS comes from add_bos_token. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const COMMON_WORDS = `
the of and to a in is it you that he was for on are with as I his they be at one have this from
or had by hot word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her long
make thing see him two has look more day could go come did number sound no most people my over
know water than call first who may down side been now find any new work part take get place made
live where after back little only round man year came show every good me give our under name very
through just form sentence great think say help low line differ turn cause much mean before move
right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father
head stand own page should country found answer school grow study still learn plant cover food sun
four between state keep eye never last let thought city tree cross farm hard start might story saw
far sea draw left late run while press close night real life few north open seem together next
white children begin got walk example ease paper group always music those both mark often letter
until mile river car feet care second book carry took science eat room friend began idea fish
mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual
young ready above ever red list though feel talk bird soon body dog family direct pose leave song
measure door product black short numeral class wind question happen complete ship area half rock
order fire south problem piece told knew pass since top whole king space heard best hour better
true during hundred five remember step early hold west ground interest reach fast verb sing listen
six table travel less morning ten simple several vowel toward war lay against pattern slow center
love person money serve appear road map rain rule govern pull cold notice voice unit power town
fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest correct
able pound done beauty drive stood contain front teach week final gave green oh quick develop ocean
warm free minute strong special mind behind clear tail produce fact street inch multiply nothing
course stay wheel full force blue object decide surface deep moon island foot system busy test
record boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape
hello cat please thank thanks yes user assistant model token text answer code data file function
value return true false null model language question reason because however therefore
`;

/** Bare suffixes so inflected forms split into word + suffix instead of single letters. */
const SUFFIXES = ['s', 'es', 'ed', 'ing', 'er', 'ers', 'est', 'ly', 'tion', 'tions', 'ment', 'ness', 'ful', 'al', "'s", "n't"];

export interface BuiltinVocab {
  readonly tokens: string[];
  readonly scores: Float32Array;
  readonly tokenTypes: Int32Array;
  /** Number of real (non-padding) entries. */
  readonly baseSize: number;
}

interface Entry {
  readonly text: string;
  readonly score: number;
  readonly type: LlamaTokenType;
}

/** Build the vocabulary; with `paddedSize`, append `<unused_N>` (type UNUSED) up to that size. */
export function buildBuiltinVocab(paddedSize?: number): BuiltinVocab {
  const entries = [...specialAndByteEntries(), ...normalEntries()];
  const baseSize = entries.length;
  if (paddedSize !== undefined && paddedSize < baseSize) {
    throw new Error(`vocabulary needs at least ${baseSize} entries, ${paddedSize} requested`);
  }
  for (let i = 0; entries.length < (paddedSize ?? 0); i++) {
    entries.push({ text: `<unused_${i}>`, score: -1e6, type: LlamaTokenType.UNUSED });
  }
  return {
    tokens: entries.map((entry) => entry.text),
    scores: Float32Array.from(entries, (entry) => entry.score),
    tokenTypes: Int32Array.from(entries, (entry) => entry.type),
    baseSize,
  };
}

function specialAndByteEntries(): Entry[] {
  const entries: Entry[] = [
    { text: '<unk>', score: 0, type: LlamaTokenType.UNKNOWN },
    { text: '<s>', score: 0, type: LlamaTokenType.CONTROL },
    { text: '</s>', score: 0, type: LlamaTokenType.CONTROL },
  ];
  for (let byte = 0; byte < 256; byte++) {
    const hex = byte.toString(16).toUpperCase().padStart(2, '0');
    entries.push({ text: `<0x${hex}>`, score: 0, type: LlamaTokenType.BYTE });
  }
  entries.push({ text: IM_START, score: 0, type: LlamaTokenType.CONTROL });
  entries.push({ text: IM_END, score: 0, type: LlamaTokenType.CONTROL });
  return entries;
}

/** Normal pieces: printable ASCII, "▁", then every prefix of each word variant, short first. */
function normalEntries(): Entry[] {
  const pieces = new Set<string>([SPACE_MARK]);
  for (let code = 0x21; code <= 0x7e; code++) pieces.add(String.fromCharCode(code));
  for (const variant of wordVariants()) {
    const chars = Array.from(variant);
    for (let length = 2; length <= chars.length; length++) pieces.add(chars.slice(0, length).join(''));
  }
  // Stable sort: equal lengths keep word-frequency order, so common words merge first.
  const ordered = [...pieces].sort((a, b) => Array.from(a).length - Array.from(b).length);
  return ordered.map((text, rank) => ({ text, score: -rank, type: LlamaTokenType.NORMAL }));
}

function wordVariants(): string[] {
  const words = [...new Set(COMMON_WORDS.split(/\s+/).filter((word) => word.length > 0))];
  const variants: string[] = [];
  for (const word of words) {
    const capitalized = word[0].toUpperCase() + word.slice(1);
    variants.push(SPACE_MARK + word, SPACE_MARK + capitalized, word, capitalized);
  }
  return [...variants, ...SUFFIXES];
}
