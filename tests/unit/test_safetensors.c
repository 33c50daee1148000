// safetensors reading and writing, and the atomic file and directory writes under them.
//
// The independent reference is the safetensors package itself: tests/reference/
// safetensors_fixture.safetensors was written by safetensors.numpy.save_file
// (make_safetensors_reference.py) and must read back with exact values and metadata. The other
// direction: this test leaves the file its writer produced, with the same tensors, as
// test_safetensors.out.safetensors in its working directory, and
// `make_safetensors_reference.py --check FILE` loads that with safetensors.torch.load_file.
// Malformed files must give one-line errors naming the file, never a crash. Comparisons are exact:
// nothing is computed, bytes are only moved.
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "framework/core/fsutil.h"
#include "framework/core/safetensors.h"

// ---- the tensors of the fixture (keep in step with make_safetensors_reference.py) ---------------

#define QUOTED_NAME "name with \"quotes\", a \\ backslash and \xc3\xbcn\xc3\xaf" "c\xc3\xb6" "de"
#define NOTE_VALUE "line one\nline \"two\"\t\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80"

typedef struct Expected {
    float conv_weight[6];
    int64_t step;
    double running_var[3];
    uint8_t mask[4];
    uint16_t half[2];
    int32_t quoted[2];
    SafetensorsTensor tensors[7];
    SafetensorsMetadata metadata[2];
} Expected;

static void expected_init(Expected *e) {
    for (int i = 0; i < 6; i++) e->conv_weight[i] = (float)((i - 2.5) / 3.0);
    e->step = 1234567890123;
    memcpy(e->running_var, (double[]){1.5, -2.25, 1e300}, sizeof e->running_var);
    memcpy(e->mask, (uint8_t[]){1, 0, 1, 1}, sizeof e->mask);
    memcpy(e->half, (uint16_t[]){0x3C00, 0xC000}, sizeof e->half);  // 1.0, -2.0
    memcpy(e->quoted, (int32_t[]){-7, 2147483647}, sizeof e->quoted);
    SafetensorsTensor *t = e->tensors;
    t[0] = (SafetensorsTensor){"model.0.conv.weight", SAFETENSORS_F32, 4, {2, 3, 1, 1}, e->conv_weight, sizeof e->conv_weight};
    t[1] = (SafetensorsTensor){"step", SAFETENSORS_I64, 0, {0}, &e->step, sizeof e->step};
    t[2] = (SafetensorsTensor){"model.1.bn.running_var", SAFETENSORS_F64, 1, {3}, e->running_var, sizeof e->running_var};
    t[3] = (SafetensorsTensor){"mask", SAFETENSORS_BOOL, 1, {4}, e->mask, sizeof e->mask};
    t[4] = (SafetensorsTensor){"half", SAFETENSORS_F16, 1, {2}, e->half, sizeof e->half};
    t[5] = (SafetensorsTensor){"empty", SAFETENSORS_F32, 2, {0, 3}, NULL, 0};
    t[6] = (SafetensorsTensor){QUOTED_NAME, SAFETENSORS_I32, 2, {2, 1}, e->quoted, sizeof e->quoted};
    e->metadata[0] = (SafetensorsMetadata){"format", "pt"};
    e->metadata[1] = (SafetensorsMetadata){"note", NOTE_VALUE};
}

static void assert_matches_expected(const SafetensorsFile *file, const Expected *e) {
    assert_int_equal(file->n_tensors, 7);
    for (int i = 0; i < 7; i++) {
        const SafetensorsTensor *want = &e->tensors[i];
        const SafetensorsTensor *got = safetensors_file_find(file, want->name);
        if (!got) fail_msg("tensor '%s' missing", want->name);
        assert_int_equal(got->dtype, want->dtype);
        assert_int_equal(got->ndim, want->ndim);
        for (int d = 0; d < want->ndim; d++) assert_int_equal(got->shape[d], want->shape[d]);
        assert_int_equal(got->n_bytes, want->n_bytes);
        if (want->n_bytes) assert_memory_equal(got->data, want->data, want->n_bytes);
    }
    assert_int_equal(file->n_metadata, 2);
    assert_string_equal(safetensors_file_metadata(file, "format"), "pt");
    assert_string_equal(safetensors_file_metadata(file, "note"), NOTE_VALUE);
    assert_null(safetensors_file_metadata(file, "missing"));
    assert_null(safetensors_file_find(file, "missing"));
}

// ---- helpers -----------------------------------------------------------------------------------

static char tmp_root[256];

static int setup_tmp(void **state) {
    (void)state;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/yp-test-safetensors-XXXXXX");
    return mkdtemp(tmp_root) ? 0 : -1;
}

static int teardown_tmp(void **state) {
    (void)state;
    Error err;
    return fs_remove_tree(tmp_root, &err) ? 0 : -1;
}

static const char *tmp_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_root, name);
    return path;
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

// A file with the given header length field, header text and data bytes.
static void write_file(const char *path, uint64_t header_len, const char *header, const void *data, size_t n_data) {
    size_t n_header = strlen(header);
    size_t n = 8 + n_header + n_data;
    unsigned char *bytes = malloc(n);
    for (int i = 0; i < 8; i++) bytes[i] = (unsigned char)(header_len >> (8 * i));
    memcpy(bytes + 8, header, n_header);
    if (n_data) memcpy(bytes + 8 + n_header, data, n_data);
    write_bytes(path, bytes, n);
    free(bytes);
}

static void write_header(const char *path, const char *header, size_t n_data) {
    unsigned char data[64] = {0};
    assert_true(n_data <= sizeof data);
    write_file(path, strlen(header), header, data, n_data);
}

// Reading `path` must fail with a message that names the file and contains `needle`.
static void expect_error(const char *path, const char *needle) {
    SafetensorsFile *file = (SafetensorsFile *)1;
    Error err = {0};
    if (safetensors_read(path, &file, &err)) fail_msg("%s: read succeeded, expected an error with '%s'", path, needle);
    assert_null(file);
    if (strncmp(err.message, path, strlen(path)) != 0 || !strstr(err.message, needle))
        fail_msg("error '%s' does not name %s and say '%s'", err.message, path, needle);
    assert_null(strchr(err.message, '\n'));
}

// Entries of `dir` whose names contain `needle`.
static int count_entries(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, needle) != NULL;
    closedir(d);
    return n;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char text[256];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

// ---- tests -------------------------------------------------------------------------------------

static void test_reads_reference_fixture(void **state) {
    (void)state;
    const char *root = getenv("YP_SOURCE_ROOT");
    assert_non_null(root);
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/safetensors_fixture.safetensors", root);
    Expected e;
    expected_init(&e);
    SafetensorsFile *file;
    Error err = {0};
    if (!safetensors_read(path, &file, &err)) fail_msg("%s", err.message);
    assert_matches_expected(file, &e);
    // The reference writer orders by dtype alignment, then name: I64 first, the BOOL last.
    assert_string_equal(file->tensors[0].name, "step");
    assert_string_equal(file->tensors[6].name, "mask");
    safetensors_file_destroy(file);
}

static void test_round_trip(void **state) {
    (void)state;
    Expected e;
    expected_init(&e);
    // Left in the working directory for make_safetensors_reference.py --check.
    const char *path = "test_safetensors.out.safetensors";
    Error err = {0};
    if (!safetensors_write(path, e.tensors, 7, e.metadata, 2, &err)) fail_msg("%s", err.message);
    SafetensorsFile *file;
    if (!safetensors_read(path, &file, &err)) fail_msg("%s", err.message);
    assert_matches_expected(file, &e);
    for (int i = 0; i < 7; i++) assert_string_equal(file->tensors[i].name, e.tensors[i].name);  // order kept
    // Data starts at a multiple of 8, as in the reference writer.
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | file->bytes[i];
    assert_int_equal(header_len % 8, 0);
    assert_int_equal(file->bytes[8 + header_len - 1], ' ');
    assert_int_equal(file->n_bytes, 8 + header_len + sizeof e.conv_weight + 8 + sizeof e.running_var + 4 + 4 + 8);
    safetensors_file_destroy(file);
}

static void test_write_matches_reference_bytes(void **state) {
    (void)state;
    // The reference implementation's own serialization test: one F32 tensor "attn.0" of shape
    // [1, 2, 3] holding 0..5 gives exactly these bytes (header length 64, no padding needed).
    const float values[6] = {0, 1, 2, 3, 4, 5};
    SafetensorsTensor t = {"attn.0", SAFETENSORS_F32, 3, {1, 2, 3}, values, sizeof values};
    const char *path = tmp_path("attn.safetensors");
    Error err = {0};
    if (!safetensors_write(path, &t, 1, NULL, 0, &err)) fail_msg("%s", err.message);
    static const char header[] = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    FILE *f = fopen(path, "rb");
    unsigned char bytes[256];
    size_t n = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    assert_int_equal(n, 8 + 64 + 24);
    assert_int_equal(bytes[0], 64);
    assert_memory_equal(bytes + 8, header, 64);
    assert_memory_equal(bytes + 72, values, 24);
    // And an empty file with metadata: {"__metadata__":{"framework":"pt"}} padded with 5 spaces.
    SafetensorsMetadata m = {"framework", "pt"};
    if (!safetensors_write(path, NULL, 0, &m, 1, &err)) fail_msg("%s", err.message);
    f = fopen(path, "rb");
    n = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    assert_int_equal(n, 48);
    assert_memory_equal(bytes + 8, "{\"__metadata__\":{\"framework\":\"pt\"}}     ", 40);
    assert_int_equal(count_entries(tmp_root, ".tmp-"), 0);
}

static void test_reads_hand_written_header(void **state) {
    (void)state;
    // Any key order, white space, escapes (a surrogate pair), no padding, offsets not in header order.
    const char *path = tmp_path("hand.safetensors");
    write_header(path,
                 " {\n \"b\" : {\"data_offsets\": [4, 6], \"shape\": [ 2 ], \"dtype\": \"U8\"},\r\n"
                 "\t\"\\u00e9\\ud83d\\ude00\\/\\n\": {\"shape\":[1],\"dtype\":\"F32\",\"data_offsets\":[0,4]},"
                 " \"__metadata__\": {} }  ",
                 6);
    SafetensorsFile *file;
    Error err = {0};
    // A header must start with '{' (the reference writer never writes leading space).
    expect_error(path, "must start with '{'");
    write_header(path,
                 "{\n \"b\" : {\"data_offsets\": [4, 6], \"shape\": [ 2 ], \"dtype\": \"U8\"},\r\n"
                 "\t\"\\u00e9\\ud83d\\ude00\\/\\n\": {\"shape\":[1],\"dtype\":\"F32\",\"data_offsets\":[0,4]},"
                 " \"__metadata__\": {} }  ",
                 6);
    if (!safetensors_read(path, &file, &err)) fail_msg("%s", err.message);
    assert_int_equal(file->n_tensors, 2);
    assert_int_equal(file->n_metadata, 0);
    assert_string_equal(file->tensors[0].name, "\xc3\xa9\xf0\x9f\x98\x80/\n");  // data order
    assert_string_equal(file->tensors[1].name, "b");
    assert_int_equal(file->tensors[1].dtype, SAFETENSORS_U8);
    assert_int_equal(file->tensors[1].n_bytes, 2);
    safetensors_file_destroy(file);

    write_header(path, "{}", 0);
    if (!safetensors_read(path, &file, &err)) fail_msg("%s", err.message);
    assert_int_equal(file->n_tensors, 0);
    safetensors_file_destroy(file);
}

static void test_rejects_malformed_files(void **state) {
    (void)state;
    const char *path = tmp_path("bad.safetensors");
    const char *ok_tensor = "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char header[512];

    expect_error(tmp_path("does-not-exist"), "cannot open");
    write_bytes(path, "\x10\0\0", 3);
    expect_error(path, "too short");
    write_file(path, 1000, "{}", NULL, 0);
    expect_error(path, "runs past the end of the file");
    write_file(path, (uint64_t)1 << 40, "{}", NULL, 0);
    expect_error(path, "over the 100000000 bytes");

    // A valid file, then cut short by one byte of data.
    snprintf(header, sizeof header, "{%s}", ok_tensor);
    write_header(path, header, 8);
    SafetensorsFile *file;
    Error err = {0};
    if (!safetensors_read(path, &file, &err)) fail_msg("%s", err.message);
    safetensors_file_destroy(file);
    write_header(path, header, 7);
    expect_error(path, "run past the end of the file");
    write_header(path, header, 9);
    expect_error(path, "the file holds 9 bytes there");

    static const struct {
        const char *header;
        const char *needle;
    } json_cases[] = {
        {"", "must start with '{'"},
        {"[]", "must start with '{'"},
        {"{", "header ends where a tensor name (a string) was expected"},
        {"{\"t\" {}}", "expected ':'"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", "expected a tensor name"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", "unexpected text after"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}{}", "unexpected text after"},
        {"{\"t", "unterminated string"},
        {"{\"t\x01\":{}}", "control character 0x01"},
        {"{\"t\\q\":{}}", "unknown escape"},
        {"{\"t\\ud800\":{}}", "lone leading surrogate"},
        {"{\"t\\udc00\":{}}", "lone trailing surrogate"},
        {"{\"t\\u00zz\":{}}", "bad hex digit"},
        {"{\"t\\u0000\":{}}", "NUL character"},
        {"{\"t\xff\":{}}", "invalid UTF-8"},
        {"{\"t\xc0\xaf\":{}}", "invalid UTF-8"},  // an overlong '/'
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", "leading zero in shape"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "expected shape (a non-negative integer)"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", "shape must be an integer"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8e0]}}", "data_offsets must be an integer"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999]}}", "too large"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", "more than 2 entries"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", "two numbers"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", "more than 8 entries"},
        {"{\"t\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", "unknown key"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"shape\":[2],\"data_offsets\":[0,8]}}", "key given twice"},
        {"{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "needs dtype, shape and data_offsets"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "tensor 't' is listed twice"},
        {"{\"__metadata__\":{\"a\":1}}", "a metadata value (a string)"},
        {"{\"__metadata__\":{\"a\":\"x\",\"a\":\"y\"}}", "metadata key 'a' is listed twice"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", "given twice"},
        {"{\"__metadata__\":[]}", "the metadata object"},
        {"{\"t\":[]}", "a tensor's description"},
        // Offsets: overlapping, with a gap, backwards, and a size that disagrees with the shape.
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", "overlap the previous tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[6,10]}}", "leave a gap after"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", "end before they begin"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "need 12 bytes but data_offsets [0, 8] hold 8"},
        {"{\"t\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", "shape too large"},
    };
    for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
        write_header(path, json_cases[i].header, 8);
        expect_error(path, json_cases[i].needle);
    }
}

static void test_atomic_file(void **state) {
    (void)state;
    const char *path = tmp_path("note.txt");
    Error err = {0};
    assert_true(fs_write_file_atomic(path, "old", 3, &err));
    assert_true(fs_write_file_atomic(path, "new text", 8, &err));
    assert_string_equal(read_text(path), "new text");
    // An aborted write leaves the old file alone and no temporary behind.
    FsAtomicFile *af;
    assert_true(fs_atomic_file_open(path, &af, &err));
    fputs("partial", fs_atomic_file_stream(af));
    fs_atomic_file_abort(af);
    assert_string_equal(read_text(path), "new text");
    assert_int_equal(count_entries(tmp_root, ".tmp-"), 0);
    // A directory that does not exist is an error naming the temporary file.
    assert_false(fs_write_file_atomic(tmp_path("missing/x"), "x", 1, &err));
    assert_non_null(strstr(err.message, "missing/x.tmp-"));
}

static void test_mkdir_p(void **state) {
    (void)state;
    Error err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/a/b//c/", tmp_root);
    assert_true(fs_mkdir_p(path, &err));
    assert_true(fs_mkdir_p(path, &err));  // existing is fine
    struct stat st;
    assert_int_equal(stat(tmp_path("a/b/c"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    write_bytes(tmp_path("a/file"), "x", 1);
    assert_false(fs_mkdir_p(tmp_path("a/file/d"), &err));
    assert_non_null(strstr(err.message, "a/file: exists and is not a directory"));
    assert_false(fs_mkdir_p("", &err));
}

// Writes name=text into a new atomic directory at `dir` and commits.
static void write_dir(const char *dir, const char *name, const char *text) {
    FsAtomicDir *ad;
    Error err = {0};
    if (!fs_atomic_dir_begin(dir, &ad, &err)) fail_msg("%s", err.message);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fs_atomic_dir_path(ad), name);
    write_bytes(path, text, strlen(text));
    snprintf(path, sizeof path, "%s/sub", fs_atomic_dir_path(ad));
    assert_int_equal(mkdir(path, 0777), 0);
    if (!fs_atomic_dir_commit(ad, &err)) fail_msg("%s", err.message);
}

static void test_atomic_dir(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp_path("ckpt"));
    write_dir(dir, "manifest", "first");
    char file[600];
    snprintf(file, sizeof file, "%s/manifest", dir);
    assert_string_equal(read_text(file), "first");
    // Replacing an existing directory: the new contents only, nothing left beside it.
    write_dir(dir, "stage0", "second");
    assert_null(read_text(file));
    snprintf(file, sizeof file, "%s/stage0", dir);
    assert_string_equal(read_text(file), "second");
    assert_int_equal(count_entries(tmp_root, ".tmp-"), 0);
    assert_int_equal(count_entries(tmp_root, ".old-"), 0);
    // An aborted directory leaves the committed one and removes the temporary one.
    FsAtomicDir *ad;
    Error err = {0};
    assert_true(fs_atomic_dir_begin(dir, &ad, &err));
    char path[600];
    snprintf(path, sizeof path, "%s/stage0", fs_atomic_dir_path(ad));
    write_bytes(path, "third", 5);
    fs_atomic_dir_abort(ad);
    assert_string_equal(read_text(file), "second");
    assert_int_equal(count_entries(tmp_root, ".tmp-"), 0);
    // A safetensors file written into an atomic directory.
    assert_true(fs_atomic_dir_begin(dir, &ad, &err));
    Expected e;
    expected_init(&e);
    snprintf(path, sizeof path, "%s/stage0.safetensors", fs_atomic_dir_path(ad));
    assert_true(safetensors_write(path, e.tensors, 7, e.metadata, 2, &err));
    assert_true(fs_atomic_dir_commit(ad, &err));
    snprintf(path, sizeof path, "%s/stage0.safetensors", dir);
    SafetensorsFile *st;
    if (!safetensors_read(path, &st, &err)) fail_msg("%s", err.message);
    assert_matches_expected(st, &e);
    safetensors_file_destroy(st);
    assert_int_equal(count_entries(tmp_root, ".tmp-"), 0);
    assert_int_equal(count_entries(dir, ".tmp-"), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_reference_fixture),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_write_matches_reference_bytes),
        cmocka_unit_test(test_reads_hand_written_header),
        cmocka_unit_test(test_rejects_malformed_files),
        cmocka_unit_test(test_atomic_file),
        cmocka_unit_test(test_mkdir_p),
        cmocka_unit_test(test_atomic_dir),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
