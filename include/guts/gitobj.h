/* gitobj.h - the one parser of git's tree format.
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

#endif
