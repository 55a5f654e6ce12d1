/*
 * config.c - parsing and validating a BERT config.json with jansson.
 *
 * Defaults are transformers' BertConfig defaults, applied when a key is
 * absent; a present key of the wrong type or out of range is an error.
 */
#include "config.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM (1 << 20)

/*
 * A config string as an error quotes it: at most 64 characters (whole UTF-8
 * sequences), then "..." when it was longer. out must hold 64 * 4 + 4 bytes.
 */
#define QUOTE_CHARS 64
#define QUOTE_BUF (QUOTE_CHARS * 4 + 4)
static const char *
quote_limit(const char *s, char *out)
{
	size_t		i = 0;
	int			chars = 0;

	while (s[i] != '\0' && chars < QUOTE_CHARS)
	{
		i++;
		while ((((unsigned char) s[i]) & 0xC0) == 0x80)
			i++;
		chars++;
	}
	memcpy(out, s, i);
	strcpy(out + i, s[i] != '\0' ? "..." : "");
	return out;
}

/* Read an integer key into *out (default kept when absent); -1 on a bad value. */
static int
get_int(json_t *root, const char *key, int *out, int lo, int hi, char *err, size_t errlen)
{
	json_t	   *v = json_object_get(root, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
	{
		snprintf(err, errlen, "config key \"%s\" must be an integer from %d to %d", key, lo, hi);
		return -1;
	}
	*out = (int) json_integer_value(v);
	return 0;
}

/* Read a number key into *out (default kept when absent); -1 on a bad value. */
static int
get_float(json_t *root, const char *key, float *out, double lo, double hi, char *err, size_t errlen)
{
	json_t	   *v = json_object_get(root, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi)
	{
		snprintf(err, errlen, "config key \"%s\" must be a number from %g to %g", key, lo, hi);
		return -1;
	}
	*out = (float) json_number_value(v);
	return 0;
}

/* id2label: an object {"0": "NEGATIVE", "1": "POSITIVE"} with ids 0..n-1. */
static int
get_labels(json_t *root, BtBertConfig *cfg, char *err, size_t errlen)
{
	json_t	   *map = json_object_get(root, "id2label");
	const char *key;
	json_t	   *val;
	size_t		n;

	if (map == NULL || json_is_null(map))
		return 0;
	if (!json_is_object(map))
	{
		snprintf(err, errlen, "config key \"id2label\" must be an object");
		return -1;
	}
	n = json_object_size(map);
	if (n == 0 || n > 100000)
	{
		snprintf(err, errlen, "config key \"id2label\" has %zu labels", n);
		return -1;
	}
	cfg->labels = calloc(n, sizeof(char *));
	if (cfg->labels == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cfg->num_labels = (int) n;
	json_object_foreach(map, key, val)
	{
		char	   *end;
		long		id = strtol(key, &end, 10);

		if (*key == '\0' || *end != '\0' || id < 0 || (size_t) id >= n)
		{
			snprintf(err, errlen, "id2label key \"%s\" is not an id from 0 to %zu", key, n - 1);
			return -1;
		}
		if (!json_is_string(val))
		{
			snprintf(err, errlen, "id2label value for id %ld is not a string", id);
			return -1;
		}
		if (cfg->labels[id] != NULL)
		{
			snprintf(err, errlen, "id2label has id %ld twice", id);
			return -1;
		}
		cfg->labels[id] = strdup(json_string_value(val));
		if (cfg->labels[id] == NULL)
		{
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
}

/*
 * Nonzero with err when key is present, not null, and other than the one
 * value the engine computes: a model it would load and compute wrongly.
 */
static int
require_string(json_t *root, const char *key, const char *only, char *err, size_t errlen)
{
	json_t	   *v = json_object_get(root, key);
	char		q[QUOTE_BUF];

	if (v == NULL || json_is_null(v) || (json_is_string(v) && strcmp(json_string_value(v), only) == 0))
		return 0;
	snprintf(err, errlen, "%s %s%s%s is not supported (only \"%s\")", key,
			 json_is_string(v) ? "\"" : "",
			 json_is_string(v) ? quote_limit(json_string_value(v), q) : "(not a string)",
			 json_is_string(v) ? "\"" : "", only);
	return 1;
}

int
bt_config_parse(const char *json, size_t len, BtBertConfig *cfg, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t	   *root;
	json_t	   *act;
	json_t	   *v;
	int			rc = -1;

	memset(cfg, 0, sizeof(*cfg));
	/* transformers BertConfig defaults */
	cfg->vocab_size = 30522;
	cfg->hidden_size = 768;
	cfg->num_layers = 12;
	cfg->num_heads = 12;
	cfg->intermediate_size = 3072;
	cfg->max_position = 512;
	cfg->type_vocab_size = 2;
	cfg->pad_token_id = 0;
	cfg->layer_norm_eps = 1e-12f;
	cfg->activation = BT_ACT_GELU;
	cfg->hidden_dropout = 0.1f;
	cfg->attention_dropout = 0.1f;
	cfg->initializer_range = 0.02f;

	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
	{
		snprintf(err, errlen, "config.json is not valid JSON: %s (line %d)", jerr.text, jerr.line);
		return -1;
	}
	if (!json_is_object(root))
	{
		snprintf(err, errlen, "config.json is not a JSON object");
		goto done;
	}
	if (get_int(root, "vocab_size", &cfg->vocab_size, 1, 1 << 24, err, errlen) ||
		get_int(root, "hidden_size", &cfg->hidden_size, 1, MAX_DIM, err, errlen) ||
		get_int(root, "num_hidden_layers", &cfg->num_layers, 1, 1024, err, errlen) ||
		get_int(root, "num_attention_heads", &cfg->num_heads, 1, 1024, err, errlen) ||
		get_int(root, "intermediate_size", &cfg->intermediate_size, 1, MAX_DIM, err, errlen) ||
		get_int(root, "max_position_embeddings", &cfg->max_position, 1, 1 << 20, err, errlen) ||
		get_int(root, "type_vocab_size", &cfg->type_vocab_size, 1, 1 << 16, err, errlen) ||
		get_int(root, "pad_token_id", &cfg->pad_token_id, 0, 1 << 24, err, errlen) ||
		get_float(root, "layer_norm_eps", &cfg->layer_norm_eps, 0.0, 1.0, err, errlen) ||
		get_float(root, "hidden_dropout_prob", &cfg->hidden_dropout, 0.0, 1.0, err, errlen) ||
		get_float(root, "attention_probs_dropout_prob", &cfg->attention_dropout, 0.0, 1.0, err, errlen) ||
		get_float(root, "initializer_range", &cfg->initializer_range, 0.0, 10.0, err, errlen))
		goto done;

	/*
	 * The engine computes BERT with absolute position embeddings. Other model
	 * types (roberta offsets its position ids, electra and distilbert name
	 * their tensors differently) and relative position embeddings could load
	 * tensors of the right shapes yet compute something else, so they are
	 * refused here rather than later or never. A missing model_type is BERT:
	 * older BERT checkpoints (and transformers' BertConfig when it writes no
	 * key) have none.
	 */
	if (require_string(root, "model_type", "bert", err, errlen) ||
		require_string(root, "position_embedding_type", "absolute", err, errlen))
		goto done;

	act = json_object_get(root, "hidden_act");
	if (act != NULL && !json_is_null(act))
	{
		const char *a = json_is_string(act) ? json_string_value(act) : "";

		if (strcmp(a, "gelu") == 0)
			cfg->activation = BT_ACT_GELU;
		else if (strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0 ||
				 strcmp(a, "gelu_fast") == 0)
			cfg->activation = BT_ACT_GELU_TANH;
		else
		{
			char		q[QUOTE_BUF];

			snprintf(err, errlen, "config hidden_act \"%s\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast)",
					 quote_limit(a, q));
			goto done;
		}
	}
	/* pgbert's own key: how texts longer than the model takes are cut (bt_keep_head_tail) */
	v = json_object_get(root, "pgbert_truncation");
	if (v != NULL && !json_is_null(v))
	{
		const char *t = json_is_string(v) ? json_string_value(v) : "";

		if (strcmp(t, "head_tail") == 0)
			cfg->head_tail = 1;
		else if (strcmp(t, "head") != 0)
		{
			char		q[QUOTE_BUF];

			snprintf(err, errlen, "config pgbert_truncation \"%s\" is not supported (head, head_tail)",
					 quote_limit(t, q));
			goto done;
		}
	}
	if (cfg->hidden_size % cfg->num_heads != 0)
	{
		snprintf(err, errlen, "hidden_size %d is not a multiple of num_attention_heads %d",
				 cfg->hidden_size, cfg->num_heads);
		goto done;
	}
	if (cfg->pad_token_id >= cfg->vocab_size)
	{
		snprintf(err, errlen, "pad_token_id %d is outside the vocabulary of %d",
				 cfg->pad_token_id, cfg->vocab_size);
		goto done;
	}
	if (get_labels(root, cfg, err, errlen))
		goto done;
	rc = 0;

done:
	json_decref(root);
	if (rc != 0)
		bt_config_free(cfg);
	return rc;
}

void
bt_config_free(BtBertConfig *cfg)
{
	if (cfg->labels)
	{
		for (int i = 0; i < cfg->num_labels; i++)
			free(cfg->labels[i]);
		free(cfg->labels);
	}
	cfg->labels = NULL;
	cfg->num_labels = 0;
}

/* A JSON boolean key into *out (default kept when absent or null); -1 on a bad value. */
static int
get_bool(json_t *root, const char *key, int *out, char *err, size_t errlen)
{
	json_t	   *v = json_object_get(root, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
	{
		snprintf(err, errlen, "tokenizer config key \"%s\" must be true or false", key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

int
bt_tokenizer_config_parse(const char *json, size_t len, BtTokenizerConfig *tc, char *err, size_t errlen)
{
	static const char *const specials[][2] = {
		{"unk_token", "[UNK]"}, {"sep_token", "[SEP]"}, {"pad_token", "[PAD]"},
		{"cls_token", "[CLS]"}, {"mask_token", "[MASK]"},
	};
	json_error_t jerr;
	json_t	   *root,
			   *v;
	int			rc = -1;

	tc->do_lower_case = 1;
	tc->strip_accents = -1;
	tc->tokenize_chinese_chars = 1;
	tc->model_max_length = 512;
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
	{
		snprintf(err, errlen, "tokenizer_config.json is not valid JSON: %s (line %d)", jerr.text, jerr.line);
		return -1;
	}
	if (!json_is_object(root))
	{
		snprintf(err, errlen, "tokenizer_config.json is not a JSON object");
		goto done;
	}
	if (get_bool(root, "do_lower_case", &tc->do_lower_case, err, errlen) ||
		get_bool(root, "tokenize_chinese_chars", &tc->tokenize_chinese_chars, err, errlen))
		goto done;
	v = json_object_get(root, "strip_accents");
	if (v != NULL && !json_is_null(v))
	{
		if (!json_is_boolean(v))
		{
			snprintf(err, errlen, "tokenizer config key \"strip_accents\" must be true, false or null");
			goto done;
		}
		tc->strip_accents = json_is_true(v);
	}
	v = json_object_get(root, "model_max_length");
	if (v != NULL && !json_is_null(v))
	{
		/* transformers writes a huge float (1e30) for "no limit" */
		if (!json_is_number(v) || json_number_value(v) < 2)
		{
			snprintf(err, errlen, "tokenizer config key \"model_max_length\" must be a number of at least 2");
			goto done;
		}
		tc->model_max_length = json_number_value(v) > INT32_MAX ? INT32_MAX : (int) json_number_value(v);
	}
	v = json_object_get(root, "tokenizer_class");
	if (v != NULL && !json_is_null(v) &&
		(!json_is_string(v) || (strcmp(json_string_value(v), "BertTokenizer") != 0 &&
								strcmp(json_string_value(v), "BertTokenizerFast") != 0)))
	{
		snprintf(err, errlen, "tokenizer_class %s is not a BERT WordPiece tokenizer",
				 json_is_string(v) ? json_string_value(v) : "(not a string)");
		goto done;
	}
	for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++)
	{
		const char *name;

		v = json_object_get(root, specials[i][0]);
		if (v == NULL || json_is_null(v))
			continue;
		/* a plain string, or an AddedToken object with "content" */
		name = json_is_string(v) ? json_string_value(v)
			: json_is_string(json_object_get(v, "content")) ? json_string_value(json_object_get(v, "content"))
			: NULL;
		if (name == NULL || strcmp(name, specials[i][1]) != 0)
		{
			snprintf(err, errlen, "tokenizer config %s %s%s%s is not supported (only %s)", specials[i][0],
					 name ? "\"" : "", name ? name : "of an unknown form", name ? "\"" : "", specials[i][1]);
			goto done;
		}
	}
	rc = 0;

done:
	json_decref(root);
	return rc;
}
