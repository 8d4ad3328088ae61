/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: YAML → position-tracking tree, and deep merge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/cfgtree.h"

static struct cfg_node *parse(const char *text, struct cfg_error *err)
{
	return cfg_parse_string("t.yaml", text, strlen(text), err);
}

static void test_positions_and_kinds(void **state)
{
	(void)state;
	struct cfg_error err;
	struct cfg_node *root = parse("# comment\n"
				      "a: 1\n"
				      "b:\n"
				      "  c: \"quoted\"\n"
				      "  d: ~\n"
				      "  e:\n"
				      "  f: [x, 'y']\n",
				      &err);
	assert_non_null(root);
	assert_int_equal(root->kind, CFG_MAP);
	struct cfg_node *a = cfg_lookup(root, "a");
	assert_int_equal(a->kind, CFG_SCALAR);
	assert_string_equal(a->value, "1");
	assert_false(a->quoted);
	assert_int_equal(a->line, 2);
	assert_string_equal(a->file, "t.yaml");
	struct cfg_node *c = cfg_lookup(root, "b.c");
	assert_string_equal(c->value, "quoted");
	assert_true(c->quoted);
	assert_int_equal(c->line, 4);
	assert_int_equal(cfg_lookup(root, "b.d")->kind, CFG_NULL);
	assert_int_equal(cfg_lookup(root, "b.e")->kind, CFG_NULL);
	struct cfg_node *f = cfg_lookup(root, "b.f");
	assert_int_equal(f->kind, CFG_SEQ);
	assert_int_equal(f->nchild, 2);
	assert_string_equal(f->child[1]->value, "y");
	assert_true(f->child[1]->quoted);
	assert_null(cfg_lookup(root, "b.zz"));
	assert_null(cfg_lookup(root, "a.b"));
	cfg_node_free(root);
}

static void test_empty_document_is_empty_map(void **state)
{
	(void)state;
	struct cfg_error err;
	const char *texts[] = {"", "# only comments\n", "---\n", "~\n"};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct cfg_node *root = parse(texts[i], &err);
		assert_non_null(root);
		assert_int_equal(root->kind, CFG_MAP);
		assert_int_equal(root->nchild, 0);
		cfg_node_free(root);
	}
}

/* Each bad document and the start of its message, with the line. */
static const struct {
	const char *text;
	const char *error;
} bad_documents[] = {
    {"a: 1\nb: [1, 2\n", "t.yaml:3: YAML syntax error"},
    {"a: 1\n  b: 2\n", "t.yaml:1: YAML syntax error: invalid multiline plain key"},
    {"a: \"unterminated\n", "t.yaml:"},
    {"a: 1\na: 2\n", "t.yaml:2: duplicate key 'a'"},
    {"- 1\n- 2\n", "t.yaml:1: the top level must be a mapping"},
    {"just text\n", "t.yaml:1: the top level must be a mapping"},
    {"a: &x 1\nb: *x\n", "t.yaml:2: YAML aliases are not supported"},
    {"a: 1\n---\nb: 2\n", "t.yaml:2: only one YAML document"},
    {"? [1, 2]\n: x\n", "t.yaml:1: a key must be a plain name"},
    {"\tx: 1\n", "t.yaml:1: YAML syntax error"},
};

static void test_bad_documents(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_documents) / sizeof(bad_documents[0]); i++) {
		struct cfg_error err = {{0}};
		struct cfg_node *root = parse(bad_documents[i].text, &err);
		if (root != NULL)
			fail_msg("case %zu parsed but should not", i);
		if (strncmp(err.msg, bad_documents[i].error, strlen(bad_documents[i].error)) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s...\"", i, err.msg,
				 bad_documents[i].error);
	}
}

static void test_deep_nesting_refused(void **state)
{
	(void)state;
	char text[4096] = "";
	for (int i = 0; i < 40; i++) {
		char line[128];
		snprintf(line, sizeof(line), "%*sk%d:\n", i * 2, "", i);
		strcat(text, line);
	}
	struct cfg_error err;
	assert_null(parse(text, &err));
	assert_non_null(strstr(err.msg, "nesting deeper than"));
}

static void test_merge(void **state)
{
	(void)state;
	struct cfg_error err;
	struct cfg_node *dst = parse("a:\n  x: 1\n  y: 2\nlist: [1, 2, 3]\nkeep: k\n", &err);
	struct cfg_node *src = cfg_parse_string(
	    "o.yaml", "a:\n  y: 20\n  z: 30\nlist: [9]\nnew: {q: 1}\n",
	    strlen("a:\n  y: 20\n  z: 30\nlist: [9]\nnew: {q: 1}\n"), &err);
	assert_non_null(dst);
	assert_non_null(src);
	cfg_merge(dst, src);
	assert_string_equal(cfg_lookup(dst, "a.x")->value, "1");
	struct cfg_node *y = cfg_lookup(dst, "a.y");
	assert_string_equal(y->value, "20");
	/* The override keeps its own origin for error messages. */
	assert_string_equal(y->file, "o.yaml");
	assert_int_equal(y->line, 2);
	assert_string_equal(y->key, "y");
	assert_string_equal(cfg_lookup(dst, "a.z")->value, "30");
	struct cfg_node *list = cfg_lookup(dst, "list");
	assert_int_equal(list->nchild, 1); /* lists are replaced, not appended */
	assert_string_equal(list->child[0]->value, "9");
	assert_string_equal(cfg_lookup(dst, "keep")->value, "k");
	assert_string_equal(cfg_lookup(dst, "new.q")->value, "1");
	cfg_node_free(dst);
}

static void test_merge_replaces_map_with_scalar(void **state)
{
	(void)state;
	struct cfg_error err;
	struct cfg_node *dst = parse("a:\n  x: 1\n", &err);
	struct cfg_node *src = parse("a: ~\n", &err);
	cfg_merge(dst, src);
	struct cfg_node *a = cfg_lookup(dst, "a");
	assert_int_equal(a->kind, CFG_NULL);
	assert_int_equal(a->nchild, 0);
	assert_string_equal(a->key, "a");
	cfg_node_free(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_positions_and_kinds),
	    cmocka_unit_test(test_empty_document_is_empty_map),
	    cmocka_unit_test(test_bad_documents),
	    cmocka_unit_test(test_deep_nesting_refused),
	    cmocka_unit_test(test_merge),
	    cmocka_unit_test(test_merge_replaces_map_with_scalar),
	};
	return cmocka_run_group_tests_name("cfgtree", tests, NULL, NULL);
}
