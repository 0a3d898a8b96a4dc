/* Passive OpenMP waiting for the ditrt command (cli.h: cli_openmp_passive).
 *
 * libgomp's default is to spin up to ~3 ms (GOMP_SPINCOUNT 300000) at every barrier before it
 * sleeps. With any other process running, each spinning thread steals the core a teammate
 * needs, and a 20-step demo image took 1.3-18 s instead of 0.2-0.5 s (README-threads.md has
 * the measurements). Passive waiting gives the same speed as one thread on a busy machine and
 * keeps every core on an idle one.
 *
 * Why a re-exec: libgomp reads OMP_WAIT_POLICY once, in its constructor, before main(), and
 * has no call to change it afterwards; setting it from the library would be too late (and a
 * global side effect on the embedding program). Fewer threads on a busy machine was no
 * option either: the thread count changes the output bytes (reduction order), so images
 * would depend on the machine's load. The command line owns its process, so it restarts
 * itself once with the policy set; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept. */
#include "cli.h"
#include <stdlib.h>
#include <unistd.h>

void cli_openmp_passive(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return; /* the user's choice, or the restarted process */
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("OMP_WAIT_POLICY"); /* no /proc (or exec refused): carry on with the default */
}
