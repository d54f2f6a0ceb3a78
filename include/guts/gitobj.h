/* gitobj.h - the one parser of git's object formats: tree entries, and the
 * links (tree, parent, object) in the headers of commits and tags.
 *
 * Every reader of trees (the core's closure check, the remote helper's
 * fetch walk, `guts fsck`, the simulator's checker) walks entries with
 * guts_tree_entry_next, so a rule such as "modes are octal, 040000 and 40000
 * are both a directory" holds everywhere or nowhere. Tree bytes come from
 * peers and from disk: the parser never reads past len and never overflows
 * the mode. Nothing here allocates.
 */
#ifndef GUTS_GITOBJ_H
#define GUTS_GITOBJ_H

#include "guts/guts.h"

/* Largest mode value accepted: git's modes fit in 16 bits (S_IFMT is
 * 0170000); more would be a corrupt entry, and the bound keeps the octal
 * accumulator from overflowing whatever the number of leading zeros. */
#define GUTS_TREE_MODE_MAX 0177777u

/** One entry of a tree: "<octal mode> <name>\0<20-byte id>". */
typedef struct guts_tree_entry {
    unsigned mode;    /* as octal, so "040000" and "40000" are equal */
    int type;         /* GUTS_OBJ_TREE, GUTS_OBJ_COMMIT (gitlink) or GUTS_OBJ_BLOB */
    const char *name; /* inside the tree's bytes, not NUL-terminated */
    size_t name_len;  /* at least 1 */
    guts_id id;
} guts_tree_entry;

/** The object type a tree entry's mode names, by git's rule (the S_IFMT
 * bits): 040000 a subtree (GUTS_OBJ_TREE), 0160000 a gitlink, a commit of
 * another repository (GUTS_OBJ_COMMIT), anything else GUTS_OBJ_BLOB. */
int guts_tree_mode_type(unsigned mode);

/** Parse the entry of the tree data[0..len) that starts at *pos.
 * @param[in,out] pos offset of the entry; advanced past it on success
 * @param[out] e the entry (name points into data)
 * Returns 1 and an entry, 0 at the end (*pos == len), or GUTS_EINVAL for a
 * malformed entry: a mode that is empty, not octal, over GUTS_TREE_MODE_MAX
 * or not followed by a space; an empty or unterminated name; fewer than 20
 * id bytes after the name. */
int guts_tree_entry_next(const uint8_t *data, size_t len, size_t *pos, guts_tree_entry *e);

/* Kinds of link a commit's or a tag's header names. */
#define GUTS_LINK_TREE 1   /* a commit's "tree <hex>" */
#define GUTS_LINK_PARENT 2 /* a commit's "parent <hex>" */
#define GUTS_LINK_OBJECT 3 /* a tag's "object <hex>" */

/** The next link in the headers (up to the first empty line) of a commit
 * (type GUTS_OBJ_COMMIT: tree, parent) or a tag (GUTS_OBJ_TAG: object):
 * a line "<word> <40 hex digits>". Other header lines are skipped.
 * @param[in,out] pos offset to go on from (0 at first); past the line read
 * @param[out] kind GUTS_LINK_*
 * Returns 1 and a link, 0 at the end of the headers, or GUTS_EINVAL for a
 * link line whose value is not exactly 40 hex digits (*kind says which;
 * *pos is past it, so a lenient caller may go on). */
int guts_obj_link_next(int type, const uint8_t *data, size_t len, size_t *pos, int *kind,
                       guts_id *id);

/** The object a tag names (its "object" line), as guts_obj_link_next.
 * Errors: GUTS_EINVAL (no well-formed object line). */
int guts_tag_target(const uint8_t *data, size_t len, guts_id *id);

#endif
