/*
 * catalog_door.h - who owns pgbert's catalog, and how C names the
 * extension's functions (catalog_door.c).
 */
#ifndef PGBERT_CATALOG_DOOR_H
#define PGBERT_CATALOG_DOOR_H

/* The role owning the extension, its catalog and the models' weights. */
extern Oid	pgbert_extension_owner(void);

/* Schema-qualified, quoted name of one of the extension's functions, for SPI (SPI connected). */
extern char *pgbert_extension_function(const char *name);

#endif
