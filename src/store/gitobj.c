/* gitobj.c - git's tree entry format, parsed in one place (gitobj.h).
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
    size_t digits = 0;
    for (; i < len && data[i] != ' '; i++, digits++) {
        if (data[i] < '0' || data[i] > '7') return GUTS_EINVAL;
        mode = mode * 8 + (unsigned)(data[i] - '0');
        if (mode > GUTS_TREE_MODE_MAX) return GUTS_EINVAL;
    }
    if (digits == 0 || i >= len) return GUTS_EINVAL;
    i++; /* the space */
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
