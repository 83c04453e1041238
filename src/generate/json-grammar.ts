/**
 * JSON Schema → GBNF, the grammar that constrained decoding (src/llama/grammar.ts) follows for
 * OpenAI's `response_format`: `json_object` (any JSON object) and `json_schema` (the subset below).
 *
 * The rules are those of llama.cpp's json-schema-to-grammar (common/json-schema-to-grammar.cpp):
 * every value ends in `space`, whitespace between tokens is bounded (a model cannot pad forever),
 * numbers have at most 16 digits per part, and properties come in the schema's order. Keywords
 * that constrain what we do not encode (patterns, formats, numeric ranges, …) are refused by name
 * rather than ignored: an answer that passed the grammar must satisfy the schema.
 */

/** A schema this converter cannot turn into a grammar, and where in it (a JSON pointer-like path). */
export class JsonSchemaError extends Error {
  override name = 'JsonSchemaError';
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(`${path || 'schema'}: ${message}`);
  }
}

const PRIMITIVES: Record<string, { body: string; uses?: readonly string[] }> = {
  space: { body: '| " " | "\\n"{1,2} [ \\t]{0,20}' },
  boolean: { body: '("true" | "false") space', uses: ['space'] },
  null: { body: '"null" space', uses: ['space'] },
  'integral-part': { body: '[0] | [1-9] [0-9]{0,15}' },
  'decimal-part': { body: '[0-9]{1,16}' },
  integer: { body: '("-"? integral-part) space', uses: ['integral-part', 'space'] },
  number: { body: '("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)? space', uses: ['integral-part', 'decimal-part', 'space'] },
  char: { body: '[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})' },
  string: { body: '"\\"" char* "\\"" space', uses: ['char', 'space'] },
  value: { body: 'object | array | string | number | boolean | null', uses: ['object', 'array', 'string', 'number', 'boolean', 'null'] },
  object: { body: '"{" space ( string ":" space value ("," space string ":" space value)* )? "}" space', uses: ['string', 'value', 'space'] },
  array: { body: '"[" space ( value ("," space value)* )? "]" space', uses: ['value', 'space'] },
};

/** Longest path into a schema that is converted, in steps as error paths count them (a hostile schema must not exhaust the stack). */
const MAX_DEPTH = 64;

/** Largest length or item bound: llama.cpp refuses a grammar that repeats anything more often (MAX_REPETITION_THRESHOLD). */
const MAX_BOUND = 2000;

/** Keywords that describe and never constrain. */
const ANNOTATIONS = new Set(['title', 'description', '$schema', '$id', '$comment', 'default', 'examples', 'deprecated', 'readOnly', 'writeOnly', '$defs', 'definitions']);

/** What each type reads beside `type` itself (anything else is refused). */
const TYPE_KEYWORDS: Record<string, ReadonlySet<string>> = {
  object: new Set(['properties', 'required', 'additionalProperties']),
  array: new Set(['items', 'minItems', 'maxItems']),
  string: new Set(['minLength', 'maxLength']),
  number: new Set(),
  integer: new Set(),
  boolean: new Set(),
  null: new Set(),
};

/** Keywords that stand for the whole schema (the type's own keywords do not apply beside them). */
const COMBINATORS = ['enum', 'const', 'anyOf', 'oneOf', '$ref'] as const;

/** The GBNF grammar (start symbol `root`) of the JSON values `schema` describes; throws JsonSchemaError for what it cannot encode. */
export function jsonSchemaGrammar(schema: unknown): string {
  return new JsonGrammarBuilder(schema).build(schema);
}

class JsonGrammarBuilder {
  private readonly rules = new Map<string, string>();
  private readonly definitions: Record<string, unknown>;

  constructor(root?: unknown) {
    this.definitions = isObject(root) ? { ...asObject(root.definitions), ...asObject(root.$defs) } : {};
  }

  build(schema: unknown): string {
    this.rules.set('root', this.visit(schema, ''));
    return [...this.rules].map(([name, body]) => `${name} ::= ${body.trim()}`).join('\n') + '\n';
  }

  /** An expression matching the values of `schema` (a rule name or a group). */
  private visit(schema: unknown, path: string): string {
    if (path.split('/').length > MAX_DEPTH) throw new JsonSchemaError(`is nested too deeply (a path of more than ${MAX_DEPTH} steps)`, '');
    if (schema === true) return this.primitive('value');
    if (!isObject(schema)) throw new JsonSchemaError(schema === false ? 'allows no value' : 'must be an object or a boolean', path);
    const combinator = COMBINATORS.find((keyword) => schema[keyword] !== undefined);
    if (combinator) return this.combination(schema, combinator, path);
    const types = schema.type === undefined ? undefined : Array.isArray(schema.type) ? schema.type : [schema.type];
    if (types === undefined) {
      this.refuseUnknown(schema, new Set(['type']), path);
      return this.primitive('value');
    }
    if (types.length === 0) throw new JsonSchemaError("'type' lists no type", path);
    const branches = types.map((type) => {
      if (typeof type !== 'string' || !(type in TYPE_KEYWORDS)) throw new JsonSchemaError(`'type' ${JSON.stringify(type)} is not a JSON Schema type`, `${path}/type`);
      return this.typed(schema, type, path);
    });
    const known = new Set(['type', ...types.flatMap((type) => [...TYPE_KEYWORDS[type as string]])]);
    this.refuseUnknown(schema, known, path);
    return branches.length === 1 ? branches[0] : `( ${branches.join(' | ')} )`;
  }

  private combination(schema: Record<string, unknown>, keyword: (typeof COMBINATORS)[number], path: string): string {
    const at = `${path}/${keyword}`;
    // `type` beside these only restates them (e.g. {"type": "string", "enum": [...]}).
    this.refuseUnknown(schema, new Set([keyword, 'type']), path);
    const value = schema[keyword];
    switch (keyword) {
      case 'const':
        return this.literal(value);
      case 'enum':
        if (!Array.isArray(value) || value.length === 0) throw new JsonSchemaError("'enum' must be a non-empty array", at);
        return `( ${value.map((item) => this.literal(item)).join(' | ')} )`;
      case 'anyOf':
      case 'oneOf':
        // oneOf as anyOf, as llama.cpp does: exclusivity cannot be kept by a grammar in general.
        if (!Array.isArray(value) || value.length === 0) throw new JsonSchemaError(`'${keyword}' must be a non-empty array`, at);
        return `( ${value.map((branch, index) => this.visit(branch, `${at}/${index}`)).join(' | ')} )`;
      case '$ref':
        return this.reference(value, at);
    }
  }

  private typed(schema: Record<string, unknown>, type: string, path: string): string {
    switch (type) {
      case 'object':
        return this.object(schema, path);
      case 'array':
        return this.array(schema, path);
      case 'string':
        return this.string(schema, path);
      default:
        return this.primitive(type);
    }
  }

  private object(schema: Record<string, unknown>, path: string): string {
    const properties = schema.properties === undefined ? {} : schema.properties;
    if (!isObject(properties)) throw new JsonSchemaError("'properties' must be an object", `${path}/properties`);
    const required = schema.required === undefined ? [] : schema.required;
    if (!Array.isArray(required) || !required.every((name) => typeof name === 'string')) throw new JsonSchemaError("'required' must be an array of names", `${path}/required`);
    const missing = required.find((name) => !Object.hasOwn(properties, name));
    if (missing !== undefined) throw new JsonSchemaError(`'required' names '${missing}', which 'properties' does not define`, `${path}/required`);
    const extra = schema.additionalProperties;
    const names = Object.keys(properties);
    if (names.length === 0 && extra !== false) return extra === undefined || extra === true ? this.primitive('object') : this.map(extra, `${path}/additionalProperties`);
    // Extra properties are optional by the schema: the grammar writes none (as OpenAI's strict mode).
    if (extra !== undefined && extra !== false && extra !== true) throw new JsonSchemaError("'additionalProperties' as a schema is supported without 'properties' only", `${path}/additionalProperties`);
    const space = this.primitive('space');
    const members = names.map((name) => ({
      text: `${this.quote(JSON.stringify(name))} ${space} ":" ${space} ${this.visit(properties[name], `${path}/properties/${name}`)}`,
      required: required.includes(name),
    }));
    const rule = this.uniqueName(path ? path.split('/').pop()! : 'root-object');
    return `"{" ${space} ${this.members(members, rule)} "}" ${space}`;
  }

  /**
   * Members in order, optional ones optional, a comma between any two present: `first(i)` is
   * what may follow when none is written yet, `rest(i)` when one is (named rules, so the text
   * grows linearly with the members).
   */
  private members(members: readonly { text: string; required: boolean }[], rule: string): string {
    if (members.length === 0) return '';
    const space = this.primitive('space');
    const rest = (index: number): string => {
      if (index === members.length) return '';
      const name = `${rule}-rest-${index}`;
      if (this.rules.has(name)) return name;
      const member = `"," ${space} ${members[index].text}`;
      this.rules.set(name, members[index].required ? `${member} ${rest(index + 1)}` : `( ${member} )? ${rest(index + 1)}`);
      return name;
    };
    const first = (index: number): string => {
      if (index === members.length) return '';
      const name = `${rule}-first-${index}`;
      const present = `${members[index].text} ${rest(index + 1)}`;
      const next = members[index].required ? '' : first(index + 1);
      this.rules.set(name, members[index].required ? present : next ? `( ${present} ) | ${next}` : `( ${present} )?`);
      return name;
    };
    return first(0);
  }

  /** An object of any keys whose values follow `values` (additionalProperties without properties). */
  private map(values: unknown, path: string): string {
    const value = this.visit(values, path);
    const space = this.primitive('space');
    const member = `${this.primitive('string')} ":" ${space} ${value}`;
    return `"{" ${space} ( ${member} ( "," ${space} ${member} )* )? "}" ${space}`;
  }

  private array(schema: Record<string, unknown>, path: string): string {
    const item = schema.items === undefined ? this.primitive('value') : this.visit(schema.items, `${path}/items`);
    const { min, max } = this.bounds(schema, 'minItems', 'maxItems', path);
    const space = this.primitive('space');
    const items = min === 0 && max === undefined ? `( ${item} ( "," ${space} ${item} )* )?` : repeatSeparated(item, `"," ${space}`, min, max);
    return `"[" ${space} ${items} "]" ${space}`;
  }

  private string(schema: Record<string, unknown>, path: string): string {
    const { min, max } = this.bounds(schema, 'minLength', 'maxLength', path);
    if (min === 0 && max === undefined) return this.primitive('string');
    const char = this.primitive('char');
    return `"\\"" ${char}{${min},${max ?? ''}} "\\"" ${this.primitive('space')}`;
  }

  private bounds(schema: Record<string, unknown>, minKey: string, maxKey: string, path: string): { min: number; max: number | undefined } {
    const read = (key: string): number | undefined => {
      const value = schema[key];
      if (value === undefined) return undefined;
      if (!Number.isSafeInteger(value) || (value as number) < 0) throw new JsonSchemaError(`'${key}' must be a non-negative integer`, `${path}/${key}`);
      if ((value as number) > MAX_BOUND) throw new JsonSchemaError(`'${key}' above ${MAX_BOUND} is not supported (llama.cpp's grammars repeat nothing more often)`, `${path}/${key}`);
      return value as number;
    };
    const min = read(minKey) ?? 0;
    const max = read(maxKey);
    if (max !== undefined && max < min) throw new JsonSchemaError(`'${maxKey}' is below '${minKey}'`, `${path}/${maxKey}`);
    return { min, max };
  }

  private reference(ref: unknown, path: string): string {
    const match = typeof ref === 'string' ? /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref) : null;
    if (!match) throw new JsonSchemaError("only local references ('#/$defs/Name' or '#/definitions/Name') are supported", path);
    const name = `ref-${sanitize(match[2])}`;
    if (!this.rules.has(name)) {
      if (!(match[2] in this.definitions)) throw new JsonSchemaError(`'${ref}' is not defined`, path);
      this.rules.set(name, ''); // placeholder: a recursive definition refers to itself by name
      this.rules.set(name, this.visit(this.definitions[match[2]], `/${match[1]}/${match[2]}`));
    }
    return name;
  }

  /** A JSON value written exactly (`const`, one of an `enum`). */
  private literal(value: unknown): string {
    if (value === undefined) throw new JsonSchemaError('a constant must be a JSON value', '');
    return `${this.quote(JSON.stringify(value))} ${this.primitive('space')}`;
  }

  /** A GBNF string literal of `text`. */
  private quote(text: string): string {
    return `"${text.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')}"`;
  }

  private primitive(name: string): string {
    if (this.rules.has(name)) return name;
    const { body, uses = [] } = PRIMITIVES[name];
    this.rules.set(name, body);
    for (const used of uses) this.primitive(used);
    return name;
  }

  private uniqueName(hint: string): string {
    const base = sanitize(hint) || 'object';
    let name = base;
    for (let index = 2; this.rules.has(`${name}-first-0`) || this.rules.has(name); index++) name = `${base}-${index}`;
    return name;
  }

  private refuseUnknown(schema: Record<string, unknown>, known: ReadonlySet<string>, path: string): void {
    for (const keyword of Object.keys(schema)) {
      if (!known.has(keyword) && !ANNOTATIONS.has(keyword)) throw new JsonSchemaError(`'${keyword}' is not supported in a response format's schema here`, `${path}/${keyword}`);
    }
  }
}

/** Any JSON object: `response_format: {"type": "json_object"}`. */
export const JSON_OBJECT_GRAMMAR = new JsonGrammarBuilder().build({ type: 'object' });

/** `item` min..max times (max undefined: unbounded), `separator` between them. */
function repeatSeparated(item: string, separator: string, min: number, max: number | undefined): string {
  if (max === 0) return '';
  const more = max === 1 ? '' : `( ${separator} ${item} ){${Math.max(0, min - 1)},${max === undefined ? '' : max - 1}}`;
  const some = `${item} ${more}`;
  return min === 0 ? `( ${some} )?` : some;
}

function sanitize(name: string): string {
  return name.replace(/[^a-zA-Z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asObject(value: unknown): Record<string, unknown> {
  return isObject(value) ? value : {};
}
