// The path helpers of framework/core/path.h: joining, the three kinds of lexical clean-up, the
// folder holding a path and formatting into a bounded buffer. Each case states its expected string
// by hand (the rules are those of the header: dataset paths keep "..", the experiment file's paths
// resolve it, file-system walks join names as they are). Comparisons are exact.
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "framework/core/path.h"

static void expect_join(const char *dir, const char *rel, PathClean clean, const char *want) {
    char *got = path_join(dir, rel, clean);
    if (strcmp(got, want))
        fail_msg("path_join(\"%s\", \"%s\", %d) = \"%s\", expected \"%s\"", dir, rel, clean, got, want);
    free(got);
}

static void expect_dirname(const char *path, const char *want) {
    char *got = path_dirname(path);
    if (strcmp(got, want)) fail_msg("path_dirname(\"%s\") = \"%s\", expected \"%s\"", path, got, want);
    free(got);
}

static void test_join_as_given(void **state) {
    (void)state;
    expect_join("a", "b", PATH_CLEAN_NONE, "a/b");
    expect_join("./a//", "b", PATH_CLEAN_NONE, "./a///b");  // nothing is cleaned
    expect_join("a/..", ".", PATH_CLEAN_NONE, "a/../.");
    expect_join("a", "/abs/x", PATH_CLEAN_NONE, "/abs/x");  // an absolute rel stands alone
    expect_join("", "b", PATH_CLEAN_NONE, "b");             // so does a rel with no folder
}

static void test_join_drops_dots(void **state) {
    (void)state;
    expect_join("data", "./images//train/", PATH_CLEAN_DOT, "data/images/train");
    expect_join("./data", "../images", PATH_CLEAN_DOT, "data/../images");  // ".." stays
    expect_join("/root/./x", ".", PATH_CLEAN_DOT, "/root/x");
    expect_join(".", ".", PATH_CLEAN_DOT, ".");  // empty: "."
    expect_join("", "", PATH_CLEAN_DOT, ".");
    expect_join("//", ".", PATH_CLEAN_DOT, "/");
    expect_join("a", "/b//c/.", PATH_CLEAN_DOT, "/b/c");
    expect_join("...", ".x/x./..", PATH_CLEAN_DOT, ".../.x/x./..");  // only "." and ".." are special
}

static void test_join_resolves_dotdot(void **state) {
    (void)state;
    expect_join("/home/u/exp", "../models/m.yaml", PATH_CLEAN_DOTDOT, "/home/u/models/m.yaml");
    expect_join("/home/u/exp", "./a/./../b/", PATH_CLEAN_DOTDOT, "/home/u/exp/b");
    expect_join("/a", "../../..", PATH_CLEAN_DOTDOT, "/");  // nothing above the root
    expect_join("/a", "../../../b", PATH_CLEAN_DOTDOT, "/b");
    expect_join("/", "x./..", PATH_CLEAN_DOTDOT, "/");
    expect_join("/x", "/abs/./y/../z", PATH_CLEAN_DOTDOT, "/abs/z");
    // Relative: what cannot be resolved stays.
    expect_join("a", "../../x", PATH_CLEAN_DOTDOT, "../x");
    expect_join("..", "a/..", PATH_CLEAN_DOTDOT, "..");
    expect_join("a/b", "../..", PATH_CLEAN_DOTDOT, ".");
    expect_join("x", "../../..", PATH_CLEAN_DOTDOT, "../..");
}

static void test_clean_in_place(void **state) {
    (void)state;
    char path[] = "//a/./b//../c/";
    path_clean(path, PATH_CLEAN_DOTDOT);
    assert_string_equal(path, "/a/c");
    char kept[] = "a/./b//../c/";
    path_clean(kept, PATH_CLEAN_DOT);
    assert_string_equal(kept, "a/b/../c");
    char same[] = "a/./b/";
    path_clean(same, PATH_CLEAN_NONE);
    assert_string_equal(same, "a/./b/");
}

static void test_dirname(void **state) {
    (void)state;
    expect_dirname("a/b/c.yaml", "a/b");
    expect_dirname("a/b//", "a");  // trailing slashes are not a component
    expect_dirname("name", ".");
    expect_dirname("/name", "/");
    expect_dirname("/", "/");
    expect_dirname("//", "/");
}

static void expect_stem(const char *path, const char *want) {
    char *got = path_stem(path);
    assert_string_equal(got, want);
    free(got);
}

static void test_stem(void **state) {
    (void)state;
    expect_stem("experiments/default.yaml", "default");
    expect_stem("default.yaml", "default");
    expect_stem("a.b/study.tar.gz", "study.tar");  // only the last extension
    expect_stem("dir/name", "name");
    expect_stem(".hidden", ".hidden");
}

static void test_format(void **state) {
    (void)state;
    Error err = {0};
    char path[PATH_MAX];
    assert_true(path_format(path, sizeof path, &err, "%s/stage-%d.safetensors", "/run", 3));
    assert_string_equal(path, "/run/stage-3.safetensors");
    char small[8];
    assert_false(path_format(small, sizeof small, &err, "%s/%s", "abc", "defgh"));
    assert_string_equal(err.message, "abc/def...: path too long");  // what fitted, then the reason
    char *long_dir = malloc(PATH_MAX + 1);
    memset(long_dir, 'd', PATH_MAX);
    long_dir[PATH_MAX] = '\0';
    assert_false(path_format(path, sizeof path, &err, "%s/x", long_dir));
    assert_int_equal(strlen(err.message), 200 + strlen("...: path too long"));  // at most 200 of it
    free(long_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_as_given),
        cmocka_unit_test(test_stem),
        cmocka_unit_test(test_join_drops_dots),
        cmocka_unit_test(test_join_resolves_dotdot),
        cmocka_unit_test(test_clean_in_place),
        cmocka_unit_test(test_dirname),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
