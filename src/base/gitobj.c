/* gitobj.c - git's object formats, parsed in one place (gitobj.h): tree
 * entries, and the link lines of commit and tag headers.
 *
 * git writes "40000" for a directory but reads the mode as an octal number,
 * so a tree written with "040000" (by another tool, or on purpose) is a
 * directory to git. A reader that compared the text instead took such a
 * subtree for a blob and never looked inside it: the core then applied a
 * ref before the subtree's entries were stored. Hence one parser: the mode
 * is a number, and its type comes from the S_IFMT bits as in git.
 */
#include <string.h>

#include "guts/gitobj.h"

#define MODE_FMT 0170000u  /* S_IFMT */
#define MODE_DIR 0040000u  /* S_IFDIR */
#define MODE_LINK 0160000u /* git's S_IFGITLINK */

int guts_tree_mode_type(unsigned mode)
{
    if ((mode & MODE_FMT) == MODE_DIR) return GUTS_OBJ_TREE;
    if ((mode & MODE_FMT) == MODE_LINK) return GUTS_OBJ_COMMIT;
    return GUTS_OBJ_BLOB;
}

int guts_tree_entry_next(const uint8_t *data, size_t len, size_t *pos, guts_tree_entry *e)
{
    size_t i = *pos;
    if (i >= len) return 0;
    unsigned mode = 0;
    /* git's two usual modes first (a file, a directory): the same numbers
     * the loop below reads, without its per-digit steps */
    if (len - i >= 8 && memcmp(data + i, "100644 ", 7) == 0) {
        mode = 0100644u;
        i += 7;
    } else if (len - i >= 8 && memcmp(data + i, "40000 ", 6) == 0) {
        mode = 040000u;
        i += 6;
    } else {
        size_t digits = 0;
        for (; i < len && data[i] != ' '; i++, digits++) {
            if (data[i] < '0' || data[i] > '7') return GUTS_EINVAL;
            mode = mode * 8 + (unsigned)(data[i] - '0');
            if (mode > GUTS_TREE_MODE_MAX) return GUTS_EINVAL;
        }
        if (digits == 0 || i >= len) return GUTS_EINVAL;
        i++; /* the space */
    }
    const uint8_t *nul = memchr(data + i, 0, len - i);
    if (!nul || nul == data + i) return GUTS_EINVAL;
    size_t name_end = (size_t)(nul - data);
    if (len - name_end - 1 < GUTS_ID_LEN) return GUTS_EINVAL;
    e->mode = mode;
    e->type = guts_tree_mode_type(mode);
    e->name = (const char *)data + i;
    e->name_len = name_end - i;
    memcpy(e->id.b, data + name_end + 1, GUTS_ID_LEN);
    *pos = name_end + 1 + GUTS_ID_LEN;
    return 1;
}

int guts_obj_link_next(int type, const uint8_t *data, size_t len, size_t *pos, int *kind,
                       guts_id *id)
{
    while (*pos < len) {
        const uint8_t *l = data + *pos, *nl = memchr(l, '\n', len - *pos);
        size_t ll = nl ? (size_t)(nl - l) : len - *pos;
        if (ll == 0) return 0; /* the empty line before the message */
        *pos += ll + (nl ? 1 : 0);
        size_t k = 0;
        if (type == GUTS_OBJ_COMMIT && ll >= 5 && memcmp(l, "tree ", 5) == 0) {
            *kind = GUTS_LINK_TREE;
            k = 5;
        } else if (type == GUTS_OBJ_COMMIT && ll >= 7 && memcmp(l, "parent ", 7) == 0) {
            *kind = GUTS_LINK_PARENT;
            k = 7;
        } else if (type == GUTS_OBJ_TAG && ll >= 7 && memcmp(l, "object ", 7) == 0) {
            *kind = GUTS_LINK_OBJECT;
            k = 7;
        } else {
            continue;
        }
        return guts_id_from_hex((const char *)l + k, ll - k, id) == GUTS_OK ? 1 : GUTS_EINVAL;
    }
    return 0;
}

int guts_tag_target(const uint8_t *data, size_t len, guts_id *id)
{
    size_t pos = 0;
    int kind, rc;
    rc = guts_obj_link_next(GUTS_OBJ_TAG, data, len, &pos, &kind, id);
    return rc == 1 ? GUTS_OK : GUTS_EINVAL;
}
