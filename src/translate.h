/*-------------------------------------------------------------------------
 *
 * translate.h
 *		What every wire format that translates llmgw's Chat Completions
 *		request reads the same way: content parts (text, images as data: or
 *		http(s) URLs, files as data: URLs or file ids), data: URLs, response_format, tool_choice, and
 *		Anthropic's own members (prompt-cache marks, extended thinking).
 *
 * Include after the PostgreSQL headers: it includes jansson.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_TRANSLATE_H
#define LLMGW_TRANSLATE_H

#include "jsonutil.h"

/* What a wire format takes in content parts */
typedef struct LlmgwPartRules
{
	const char *kind;			/* the provider kind, named in errors */
	const char *const *media_types; /* image media types it takes inline, NULL-terminated */
	bool		image_urls;		/* it takes images by http(s) URL */
	const char *const *file_types;	/* file media types it takes inline (as
									 * documents), NULL-terminated; NULL: none */
	bool		file_ids;		/* it takes OpenAI file ids (file_id) */
} LlmgwPartRules;

/*
 * A content part that was read: text, an image (by URL or inline), or a file
 * (a document such as a PDF: inline as a data: URL, or by OpenAI file id)
 */
typedef struct LlmgwPart
{
	json_t	   *text;			/* a text part's text (borrowed), else NULL */
	json_t	   *url;			/* an image's URL or a file's data: URL as
								 * given (borrowed) */
	json_t	   *detail;			/* an image's detail (borrowed), or NULL */
	char	   *media_type;		/* inline: its media type, lower case */
	const char *data;			/* inline: its base64 data (within url) */
	bool		file;			/* a file part (else text or image) */
	json_t	   *filename;		/* a file's filename (borrowed), or NULL */
	json_t	   *file_id;		/* a file given by id (borrowed), else NULL */
	json_t	   *cache_control;	/* its prompt-cache mark (borrowed), or NULL */
} LlmgwPart;

/* A part in a wire format's own shape (a new reference) */
typedef json_t *(*LlmgwPartWriter) (const LlmgwPart *part);

extern json_t *llmgw_content_translate(json_t *content, size_t msg, bool images,
									   const LlmgwPartRules *rules, LlmgwPartWriter write,
									   char **error);
extern bool llmgw_content_text(json_t *content, size_t msg, const LlmgwPartRules *rules,
							   StringInfo text, char **error);
extern const char *llmgw_data_url(const char *url, char **media_type, const char **data);
extern bool llmgw_cache_control(json_t *holder, json_t **mark, const char *where, char **error);
extern bool llmgw_cache_control_at(json_t *holder, json_t **mark, const char *where, size_t a,
								   size_t b, char **error);
extern bool llmgw_has_cache_control(json_t *content);
extern bool llmgw_thinking(json_t *request, json_t **thinking, char **error);
extern bool llmgw_top_k(json_t *request, json_t **top_k, char **error);
extern bool llmgw_no_logprobs(json_t *request, const char *who, char **error);
extern bool llmgw_thinking_blocks(json_t *message, size_t msg, json_t **blocks, char **error);
extern bool llmgw_strip_anthropic(json_t *request, char **error);

/* What a request's response_format asks for */
typedef enum LlmgwResponseFormat
{
	LLMGW_FORMAT_TEXT,			/* none, or {"type": "text"} */
	LLMGW_FORMAT_JSON_OBJECT,
	LLMGW_FORMAT_JSON_SCHEMA
} LlmgwResponseFormat;

extern bool llmgw_response_format(json_t *request, LlmgwResponseFormat *format,
								  json_t **json_schema, char **error);

/* What a request's tool_choice asks for */
typedef enum LlmgwToolChoice
{
	LLMGW_TOOLS_UNSET,			/* none given: the provider's default */
	LLMGW_TOOLS_AUTO,
	LLMGW_TOOLS_NONE,
	LLMGW_TOOLS_REQUIRED,		/* some tool must be called */
	LLMGW_TOOLS_NAMED			/* this function must be called */
} LlmgwToolChoice;

extern bool llmgw_tool_choice(json_t *request, LlmgwToolChoice *choice, const char **name,
							  char **error);

#endif							/* LLMGW_TRANSLATE_H */
