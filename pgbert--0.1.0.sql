-- pgbert 0.1.0: tokenizer functions over the bundled uncased vocabulary.

\echo Use "CREATE EXTENSION pgbert" to load this file. \quit

-- Word pieces of input, exactly as Hugging Face's BertTokenizer.tokenize().
CREATE FUNCTION bert_tokenize(input text, model text DEFAULT NULL,
                              do_lower_case boolean DEFAULT NULL)
RETURNS text[]
AS 'MODULE_PATHNAME', 'pgbert_bert_tokenize'
LANGUAGE C IMMUTABLE PARALLEL SAFE COST 100;

COMMENT ON FUNCTION bert_tokenize(text, text, boolean) IS
'word pieces of input (no [CLS]/[SEP]), as Hugging Face BertTokenizer.tokenize(); model NULL = bundled uncased vocabulary';

-- Input ids with [CLS] and [SEP], truncated to max_length, as BertTokenizer(input, truncation=True).
CREATE FUNCTION bert_token_ids(input text, model text DEFAULT NULL,
                               max_length integer DEFAULT 512,
                               do_lower_case boolean DEFAULT NULL)
RETURNS integer[]
AS 'MODULE_PATHNAME', 'pgbert_bert_token_ids'
LANGUAGE C IMMUTABLE PARALLEL SAFE COST 100;

COMMENT ON FUNCTION bert_token_ids(text, text, integer, boolean) IS
'input ids [CLS] ... [SEP] truncated to max_length, as Hugging Face BertTokenizer(input, truncation=True); model NULL = bundled uncased vocabulary';

-- Build facts: versions, Unicode tables, whether CUDA was compiled in.
CREATE FUNCTION pgbert_info()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_info'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION pgbert_info() IS
'build facts of the loaded pgbert library: version, utf8proc Unicode version, tokenizer reference tables, CUDA';
