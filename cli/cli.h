/* SPDX-License-Identifier: Apache-2.0 */
/* Subcommands of the kdist command line. Each returns the exit status. */
#ifndef KD_CLI_H
#define KD_CLI_H

int cmd_node(int argc, char **argv);
int cmd_ping(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_names(int argc, char **argv);
int cmd_epmd(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
