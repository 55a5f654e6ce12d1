/*
 * config.h - a Hugging Face BERT config.json, validated.
 *
 * Only what the encoder and its heads need; everything is checked for range
 * and consistency so the model code can trust it. PostgreSQL-free.
 */
#ifndef PGBERT_CONFIG_H
#define PGBERT_CONFIG_H

#include <stddef.h>

typedef enum BtActivation
{
	BT_ACT_GELU,				/* "gelu": exact 0.5 x (1 + erf(x / sqrt 2)) */
	BT_ACT_GELU_TANH			/* "gelu_new", "gelu_pytorch_tanh", "gelu_fast" */
} BtActivation;

typedef struct BtBertConfig
{
	int			vocab_size;
	int			hidden_size;
	int			num_layers;
	int			num_heads;
	int			intermediate_size;
	int			max_position;
	int			type_vocab_size;
	int			pad_token_id;
	float		layer_norm_eps;
	BtActivation activation;
	float		hidden_dropout;
	float		attention_dropout;
	float		initializer_range;
	int			num_labels;		/* from id2label (0 when absent) */
	char	  **labels;			/* label names in id order, num_labels of them */
	int			head_tail;		/* "pgbert_truncation": "head_tail": long texts keep their first
								 * quarter and last three quarters (1), or their beginning (0) */
} BtBertConfig;

/* Parse config.json bytes into cfg (zeroed first); 0, or -1 with err. */
extern int	bt_config_parse(const char *json, size_t len, BtBertConfig *cfg, char *err, size_t errlen);

/* Free what bt_config_parse allocated (the labels). */
extern void bt_config_free(BtBertConfig *cfg);

/* Tokenizer settings of a tokenizer_config.json. */
typedef struct BtTokenizerConfig
{
	int			do_lower_case;	/* 1 or 0 (default 1) */
	int			strip_accents;	/* 1, 0, or -1 = follow do_lower_case (null/absent) */
	int			tokenize_chinese_chars;	/* default 1 */
	int			model_max_length;	/* default 512; huge sentinel values clamp to INT32_MAX */
} BtTokenizerConfig;

/*
 * Parse tokenizer_config.json bytes. Special tokens other than BERT's standard
 * [UNK]/[CLS]/[SEP]/[PAD]/[MASK] are refused (the tokenizer knows only those),
 * as is a tokenizer_class other than BertTokenizer(Fast). 0, or -1 with err.
 */
extern int	bt_tokenizer_config_parse(const char *json, size_t len, BtTokenizerConfig *tc,
									  char *err, size_t errlen);

#endif
