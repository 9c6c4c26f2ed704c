/* Score churn customers inside a C program with the model exported as C source.
 *
 *   cc -O2 -std=c99 -I BUNDLE -o score_churn score_churn.c BUNDLE/churn.c -lm
 *   ./score_churn < customers.tsv          # a header line, then one customer a line
 *   ./score_churn tenure_months=3 plan=basic ...
 *
 * churn.c and churn.h come from `modelport export churn --format bundle` and need only the
 * C library and libm. churn_score(num, cat, out) takes the numeric inputs as doubles (NAN
 * for missing) and the categorical ones as strings (NULL for missing), each in the order
 * churn.h lists them, and writes the probability of each class to out. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "churn.h"

#define MAX_LINE 65536
#define MAX_FIELDS 1024

/* Where input `name` goes: 0..N_NUMERIC-1 numeric, N_NUMERIC.. categorical, -1 unused. */
static int slot_of(const char *name) {
    for (int i = 0; CHURN_NUMERIC[i] != NULL; i++)
        if (strcmp(CHURN_NUMERIC[i], name) == 0) return i;
    for (int i = 0; CHURN_CATEGORICAL[i] != NULL; i++)
        if (strcmp(CHURN_CATEGORICAL[i], name) == 0) return CHURN_N_NUMERIC + i;
    return -1;
}

/* Put one field's text in its place; an empty field is a missing value. */
static int set_field(int slot, char *text, double *num, const char **cat) {
    if (slot < 0) return 0;
    if (slot < CHURN_N_NUMERIC) {
        char *end;
        num[slot] = *text ? strtod(text, &end) : NAN;
        if (*text && *end) return -1;
    } else {
        cat[slot - CHURN_N_NUMERIC] = *text ? text : NULL;
    }
    return 0;
}

static void clear(double *num, const char **cat) {
    for (int i = 0; i < CHURN_N_NUMERIC; i++) num[i] = NAN;
    for (int i = 0; i < CHURN_N_CATEGORICAL; i++) cat[i] = NULL;
}

/* Split `line` in place at tabs (and drop the newline); return the number of fields. */
static int split(char *line, char **fields) {
    int n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    fields[n++] = line;
    for (char *p = line; *p && n < MAX_FIELDS; p++) {
        if (*p == '\t') {
            *p = '\0';
            fields[n++] = p + 1;
        }
    }
    return n;
}

int main(int argc, char **argv) {
    double num[CHURN_N_NUMERIC + 1];
    const char *cat[CHURN_N_CATEGORICAL + 1];
    double out[CHURN_N_OUTPUTS];

    if (argc > 1) {
        clear(num, cat);
        for (int i = 1; i < argc; i++) {
            char *eq = strchr(argv[i], '=');
            if (eq == NULL) {
                fprintf(stderr, "expected name=value, got %s\n", argv[i]);
                return 2;
            }
            *eq = '\0';
            if (set_field(slot_of(argv[i]), eq + 1, num, cat) != 0) {
                fprintf(stderr, "%s must be a number, got %s\n", argv[i], eq + 1);
                return 2;
            }
        }
        churn_score(num, cat, out);
        printf("churn probability %.3f\n", out[CHURN_N_OUTPUTS - 1]);
        return 0;
    }

    static char header[MAX_LINE], line[MAX_LINE];
    static char *names[MAX_FIELDS], *fields[MAX_FIELDS];
    int slots[MAX_FIELDS];
    if (fgets(header, sizeof header, stdin) == NULL) return 0;
    int n_names = split(header, names);
    for (int i = 0; i < n_names; i++) slots[i] = slot_of(names[i]);
    for (int row = 0; fgets(line, sizeof line, stdin) != NULL; row++) {
        if (line[0] == '\n' || line[0] == '\0') continue;
        int n = split(line, fields);
        clear(num, cat);
        for (int i = 0; i < n && i < n_names; i++) {
            if (set_field(slots[i], fields[i], num, cat) != 0) {
                fprintf(stderr, "row %d: %s must be a number, got %s\n", row, names[i], fields[i]);
                return 1;
            }
        }
        churn_score(num, cat, out);
        for (int k = 0; k < CHURN_N_OUTPUTS; k++)
            printf(k ? "\t%.17g" : "%.17g", out[k]);  /* 17 digits read back exactly */
        putchar('\n');
    }
    return 0;
}
