/*
 * echo: a guest for testing the runner. Prints argv and the environment, lists a directory,
 * then exits with a chosen code or traps.
 *
 *   echo [--ls DIR] [--exit N] [--trap] [ARGS...]
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; *e; e++) printf("env %s\n", *e);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ls") && i + 1 < argc) {
            DIR *d = opendir(argv[++i]);
            if (!d) {
                printf("ls %s: cannot open\n", argv[i]);
                continue;
            }
            struct dirent *ent;
            while ((ent = readdir(d)))
                if (ent->d_name[0] != '.') printf("ls %s: %s\n", argv[i], ent->d_name);
            closedir(d);
        } else if (!strcmp(argv[i], "--exit") && i + 1 < argc) {
            fflush(stdout);
            exit(atoi(argv[++i]));
        } else if (!strcmp(argv[i], "--trap")) {
            fflush(stdout);
            __builtin_trap();
        }
    }
    return 0;
}
