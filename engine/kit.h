/* kit — tooling for people writing providers:
 *
 *   ferry providers new SLUG [--dir DIR]
 *       writes DIR/providers/SLUG.lua (a commented starter that passes
 *       `ferry providers check`) and DIR/spec/SLUG_spec.lua (its busted
 *       spec, passing as written), plus DIR/.busted and DIR/.luacheckrc
 *       when they are missing. Refuses to overwrite the provider or spec.
 *       The templates are the .lua files in scripts/ferry/templates, built into the
 *       binary.
 *
 *   ferry providers docs [--out DIR] [--providers DIR]...
 *       writes DIR/<slug>.md for every provider (bundled and from the
 *       folders given) and DIR/README.md as their index, from each
 *       provider's table: what it connects, how to connect it, its tools
 *       with their arguments, its syncs. Output is deterministic (sorted, no
 *       dates) so a test can regenerate and compare; files it wrote before
 *       for providers that are gone are removed.
 *
 * Both take argv with argv[0] = "new" / "docs" and return an exit status
 * (0, 1 user error, 2 usage). */
#ifndef FERRY_KIT_H
#define FERRY_KIT_H

int kit_new(int argc, char **argv);
int kit_docs(int argc, char **argv);

extern const char kit_new_help[];
extern const char kit_docs_help[];

#endif
