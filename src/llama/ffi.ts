/**
 * Raw koffi declarations of the llama.cpp C API we use.
 *
 * Every struct passed by value mirrors `vendor/llama.cpp/include/llama.h` (the headers of the pinned
 * build) field by field, in order: a mismatch would be silent memory corruption. `test/abi.test.ts`
 * compiles the real headers and compares sizes and offsets with these definitions.
 */
import koffi from 'koffi';

/** Opaque handles: koffi hands them around as external pointers. */
export type Pointer = unknown;

export const ProgressCallback = koffi.proto('bool llama_progress_callback(float progress, void *user_data)');
export const LogCallback = koffi.proto('void ggml_log_callback(int level, const char *text, void *user_data)');
export const AbortCallback = koffi.proto('bool ggml_abort_callback(void *data)');

export const ModelParams = koffi.struct('llama_model_params', {
  devices: 'void *',
  tensor_buft_overrides: 'void *',
  n_gpu_layers: 'int32_t',
  split_mode: 'int32_t',
  load_mode: 'int32_t',
  lazy_mode: 'int32_t',
  main_gpu: 'int32_t',
  tensor_split: 'void *',
  progress_callback: koffi.pointer(ProgressCallback),
  progress_callback_user_data: 'void *',
  kv_overrides: 'void *',
  vocab_only: 'bool',
  check_tensors: 'bool',
  use_extra_bufts: 'bool',
  no_host: 'bool',
  no_alloc: 'bool',
  load_mtp: 'bool',
});

export const ContextParams = koffi.struct('llama_context_params', {
  n_ctx: 'uint32_t',
  n_batch: 'uint32_t',
  n_ubatch: 'uint32_t',
  n_seq_max: 'uint32_t',
  n_rs_seq: 'uint32_t',
  n_outputs_max: 'uint32_t',
  n_outputs_max_per_seq: 'uint32_t',
  n_threads: 'int32_t',
  n_threads_batch: 'int32_t',
  ctx_type: 'int32_t',
  rope_scaling_type: 'int32_t',
  pooling_type: 'int32_t',
  attention_type: 'int32_t',
  flash_attn_type: 'int32_t',
  rope_freq_base: 'float',
  rope_freq_scale: 'float',
  yarn_ext_factor: 'float',
  yarn_attn_factor: 'float',
  yarn_beta_fast: 'float',
  yarn_beta_slow: 'float',
  yarn_orig_ctx: 'uint32_t',
  defrag_thold: 'float',
  cb_eval: 'void *',
  cb_eval_user_data: 'void *',
  type_k: 'int32_t',
  type_v: 'int32_t',
  abort_callback: koffi.pointer(AbortCallback),
  abort_callback_data: 'void *',
  embeddings: 'bool',
  offload_kqv: 'bool',
  no_perf: 'bool',
  op_offload: 'bool',
  swa_full: 'bool',
  kv_unified: 'bool',
  samplers: 'void *',
  n_samplers: 'size_t',
  ctx_other: 'void *',
});

export const ThreadpoolParams = koffi.struct('ggml_threadpool_params', {
  cpumask: koffi.array('bool', 512),
  n_threads: 'int',
  prio: 'int',
  poll: 'uint32_t',
  strict_cpu: 'bool',
  paused: 'bool',
});

/** ggml_threadpool_new lives in the CPU backend module; it is reached through the backend registry. */
export const ThreadpoolNew = koffi.proto('void *ggml_threadpool_new_fn(ggml_threadpool_params *params)');

export const Batch = koffi.struct('llama_batch', {
  n_tokens: 'int32_t',
  token: 'void *',
  embd: 'void *',
  pos: 'void *',
  n_seq_id: 'void *',
  seq_id: 'void *',
  logits: 'void *',
});

/** The JS shape koffi gives to (and takes from) `llama_model_params`. */
export interface ModelParamsValue {
  n_gpu_layers: number;
  progress_callback: Pointer | null;
  [field: string]: unknown;
}

/** The JS shape koffi gives to (and takes from) `llama_context_params`. */
export interface ContextParamsValue {
  n_ctx: number;
  n_batch: number;
  n_ubatch: number;
  n_seq_max: number;
  n_threads: number;
  n_threads_batch: number;
  flash_attn_type: number;
  type_k: number;
  type_v: number;
  embeddings: boolean;
  no_perf: boolean;
  kv_unified: boolean;
  [field: string]: unknown;
}

export interface ThreadpoolParamsValue {
  n_threads: number;
  poll: number;
  [field: string]: unknown;
}

export interface BatchValue {
  n_tokens: number;
  token: Pointer;
  embd: Pointer | null;
  pos: Pointer;
  n_seq_id: Pointer;
  seq_id: Pointer;
  logits: Pointer;
}

type Fn<Args extends unknown[], R> = ((...args: Args) => R) & {
  async: (...args: [...Args, (err: unknown, result: R) => void]) => void;
};

/** The functions of libllama / libggml that Tachyon calls. */
export function declareApi(llama: koffi.IKoffiLib, ggml: koffi.IKoffiLib, ggmlBase: koffi.IKoffiLib) {
  const f = <Args extends unknown[], R>(lib: koffi.IKoffiLib, proto: string) => lib.func(proto) as unknown as Fn<Args, R>;
  return {
    backendLoadAllFromPath: f<[string], void>(ggml, 'void ggml_backend_load_all_from_path(const char *dir)'),
    backendDevCount: f<[], number>(ggml, 'size_t ggml_backend_dev_count()'),
    backendDevGet: f<[number], Pointer>(ggml, 'void *ggml_backend_dev_get(size_t index)'),
    backendDevName: f<[Pointer], string>(ggml, 'const char *ggml_backend_dev_name(void *dev)'),
    backendDevDescription: f<[Pointer], string>(ggml, 'const char *ggml_backend_dev_description(void *dev)'),
    backendDevType: f<[Pointer], number>(ggml, 'int ggml_backend_dev_type(void *dev)'),
    backendDevByType: f<[number], Pointer | null>(ggml, 'void *ggml_backend_dev_by_type(int type)'),
    backendDevBackendReg: f<[Pointer], Pointer>(ggml, 'void *ggml_backend_dev_backend_reg(void *dev)'),
    backendRegGetProcAddress: f<[Pointer, string], Pointer | null>(ggml, 'void *ggml_backend_reg_get_proc_address(void *reg, const char *name)'),
    threadpoolParamsDefault: f<[number], ThreadpoolParamsValue>(ggmlBase, 'ggml_threadpool_params ggml_threadpool_params_default(int n_threads)'),
    logSet: f<[Pointer | null, Pointer | null], void>(ggmlBase, 'void ggml_log_set(ggml_log_callback *cb, void *user_data)'),

    backendInit: f<[], void>(llama, 'void llama_backend_init()'),
    llamaLogSet: f<[Pointer | null, Pointer | null], void>(llama, 'void llama_log_set(ggml_log_callback *cb, void *user_data)'),
    systemInfo: f<[], string>(llama, 'const char *llama_print_system_info()'),
    modelDefaultParams: f<[], ModelParamsValue>(llama, 'llama_model_params llama_model_default_params()'),
    contextDefaultParams: f<[], ContextParamsValue>(llama, 'llama_context_params llama_context_default_params()'),
    modelLoadFromFile: f<[string, ModelParamsValue], Pointer | null>(llama, 'void *llama_model_load_from_file(const char *path, llama_model_params params)'),
    modelFree: f<[Pointer], void>(llama, 'void llama_model_free(void *model)'),
    initFromModel: f<[Pointer, ContextParamsValue], Pointer | null>(llama, 'void *llama_init_from_model(void *model, llama_context_params params)'),
    free: f<[Pointer], void>(llama, 'void llama_free(void *ctx)'),

    nCtx: f<[Pointer], number>(llama, 'uint32_t llama_n_ctx(void *ctx)'),
    nBatch: f<[Pointer], number>(llama, 'uint32_t llama_n_batch(void *ctx)'),
    nSeqMax: f<[Pointer], number>(llama, 'uint32_t llama_n_seq_max(void *ctx)'),
    getMemory: f<[Pointer], Pointer>(llama, 'void *llama_get_memory(void *ctx)'),
    modelGetVocab: f<[Pointer], Pointer>(llama, 'void *llama_model_get_vocab(void *model)'),
    modelNCtxTrain: f<[Pointer], number>(llama, 'int32_t llama_model_n_ctx_train(void *model)'),
    modelNEmbd: f<[Pointer], number>(llama, 'int32_t llama_model_n_embd(void *model)'),
    modelNLayer: f<[Pointer], number>(llama, 'int32_t llama_model_n_layer(void *model)'),
    modelNHead: f<[Pointer], number>(llama, 'int32_t llama_model_n_head(void *model)'),
    modelNHeadKv: f<[Pointer], number>(llama, 'int32_t llama_model_n_head_kv(void *model)'),
    modelNParams: f<[Pointer], bigint | number>(llama, 'uint64_t llama_model_n_params(void *model)'),
    modelSize: f<[Pointer], bigint | number>(llama, 'uint64_t llama_model_size(void *model)'),
    modelDesc: f<[Pointer, Buffer, number], number>(llama, 'int32_t llama_model_desc(void *model, _Out_ uint8_t *buf, size_t size)'),
    modelMetaValStr: f<[Pointer, string, Buffer, number], number>(llama, 'int32_t llama_model_meta_val_str(void *model, const char *key, _Out_ uint8_t *buf, size_t size)'),
    modelChatTemplate: f<[Pointer, string | null], string | null>(llama, 'const char *llama_model_chat_template(void *model, const char *name)'),

    vocabNTokens: f<[Pointer], number>(llama, 'int32_t llama_vocab_n_tokens(void *vocab)'),
    vocabBos: f<[Pointer], number>(llama, 'int32_t llama_vocab_bos(void *vocab)'),
    vocabEos: f<[Pointer], number>(llama, 'int32_t llama_vocab_eos(void *vocab)'),
    vocabEot: f<[Pointer], number>(llama, 'int32_t llama_vocab_eot(void *vocab)'),
    vocabIsEog: f<[Pointer, number], boolean>(llama, 'bool llama_vocab_is_eog(void *vocab, int32_t token)'),
    vocabIsControl: f<[Pointer, number], boolean>(llama, 'bool llama_vocab_is_control(void *vocab, int32_t token)'),
    vocabGetAddBos: f<[Pointer], boolean>(llama, 'bool llama_vocab_get_add_bos(void *vocab)'),
    vocabGetText: f<[Pointer, number], string>(llama, 'const char *llama_vocab_get_text(void *vocab, int32_t token)'),
    tokenize: f<[Pointer, Buffer, number, Int32Array, number, boolean, boolean], number>(
      llama,
      'int32_t llama_tokenize(void *vocab, const uint8_t *text, int32_t text_len, _Out_ int32_t *tokens, int32_t n_tokens_max, bool add_special, bool parse_special)',
    ),
    tokenToPiece: f<[Pointer, number, Buffer, number, number, boolean], number>(
      llama,
      'int32_t llama_token_to_piece(void *vocab, int32_t token, _Out_ uint8_t *buf, int32_t length, int32_t lstrip, bool special)',
    ),

    decode: f<[Pointer, BatchValue], number>(llama, 'int32_t llama_decode(void *ctx, llama_batch batch)'),
    getLogits: f<[Pointer], Pointer | null>(llama, 'float *llama_get_logits(void *ctx)'),
    getLogitsIth: f<[Pointer, number], Pointer | null>(llama, 'float *llama_get_logits_ith(void *ctx, int32_t i)'),
    getEmbeddingsIth: f<[Pointer, number], Pointer | null>(llama, 'float *llama_get_embeddings_ith(void *ctx, int32_t i)'),
    attachThreadpool: f<[Pointer, Pointer, Pointer], void>(llama, 'void llama_attach_threadpool(void *ctx, void *tp, void *tp_batch)'),

    memoryClear: f<[Pointer, boolean], void>(llama, 'void llama_memory_clear(void *mem, bool data)'),
    memorySeqRm: f<[Pointer, number, number, number], boolean>(llama, 'bool llama_memory_seq_rm(void *mem, int32_t seq, int32_t p0, int32_t p1)'),
    memorySeqCp: f<[Pointer, number, number, number, number], void>(llama, 'void llama_memory_seq_cp(void *mem, int32_t src, int32_t dst, int32_t p0, int32_t p1)'),
    memorySeqKeep: f<[Pointer, number], void>(llama, 'void llama_memory_seq_keep(void *mem, int32_t seq)'),
    memorySeqAdd: f<[Pointer, number, number, number, number], void>(llama, 'void llama_memory_seq_add(void *mem, int32_t seq, int32_t p0, int32_t p1, int32_t delta)'),
    memorySeqPosMin: f<[Pointer, number], number>(llama, 'int32_t llama_memory_seq_pos_min(void *mem, int32_t seq)'),
    memorySeqPosMax: f<[Pointer, number], number>(llama, 'int32_t llama_memory_seq_pos_max(void *mem, int32_t seq)'),

    samplerInitGrammar: f<[Pointer, string, string], Pointer | null>(llama, 'void *llama_sampler_init_grammar(void *vocab, const char *grammar_str, const char *grammar_root)'),
    samplerApply: f<[Pointer, Pointer], void>(llama, 'void llama_sampler_apply(void *smpl, void *cur_p)'),
    samplerAccept: f<[Pointer, number], void>(llama, 'void llama_sampler_accept(void *smpl, int32_t token)'),
    samplerFree: f<[Pointer], void>(llama, 'void llama_sampler_free(void *smpl)'),
    samplerClone: f<[Pointer], Pointer | null>(llama, 'void *llama_sampler_clone(void *smpl)'),

    stateSeqGetSize: f<[Pointer, number], number>(llama, 'size_t llama_state_seq_get_size(void *ctx, int32_t seq)'),
    stateSeqGetData: f<[Pointer, Uint8Array, number, number], number>(llama, 'size_t llama_state_seq_get_data(void *ctx, _Out_ uint8_t *dst, size_t size, int32_t seq)'),
    stateSeqSetData: f<[Pointer, Uint8Array, number, number], number>(llama, 'size_t llama_state_seq_set_data(void *ctx, const uint8_t *src, size_t size, int32_t dest_seq)'),
  };
}

export type LlamaApi = ReturnType<typeof declareApi>;
