/*
 * `ferry vm console`: after ferryd upgrades the connection, relay bytes
 * between the terminal and the VM's serial console. The terminal goes raw
 * (so Ctrl-C reaches the guest) and is restored on every way out; Ctrl-]
 * detaches, as in telnet and virsh.
 */
#include "cli/cli.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#define CLI_DETACH_KEY 0x1d /* Ctrl-] */

static struct termios cli_saved_tty;
static volatile sig_atomic_t cli_tty_raw;

static void cli_tty_restore(void)
{
	if (cli_tty_raw) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &cli_saved_tty);
		cli_tty_raw = 0;
	}
}

/* A fatal signal while raw: restore the terminal, then die as asked. */
static void cli_tty_signal(int sig)
{
	cli_tty_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int cli_tty_make_raw(struct err *e)
{
	struct termios raw;
	if (!isatty(STDIN_FILENO))
		return 0; /* piped input: nothing to change */
	if (tcgetattr(STDIN_FILENO, &cli_saved_tty) < 0)
		return err_sys(e, "tcgetattr");
	raw = cli_saved_tty;
	cfmakeraw(&raw);
	signal(SIGTERM, cli_tty_signal);
	signal(SIGHUP, cli_tty_signal);
	signal(SIGQUIT, cli_tty_signal);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0)
		return err_sys(e, "tcsetattr");
	cli_tty_raw = 1;
	return 0;
}

static int cli_write_fd(int fd, const char *p, size_t n, struct err *e)
{
	return sock_write_all(fd, p, n, -1, e);
}

int cli_console_relay(struct cli_conn *c, const char *name, struct err *e)
{
	const char *pending;
	bool stdin_open = true;
	char buf[4096];
	int rc = 0;

	fprintf(stderr, "Connected to the console of %s. Press Ctrl-] to detach.\r\n", name);
	if (cli_tty_make_raw(e) < 0)
		return -1;
	for (;;) {
		/* Console bytes already read: with ferryd's reply, or the rest
		 * of a sealed frame (poll() cannot see those). */
		size_t npend = sock_reader_pending(&c->rd, &pending);
		if (npend) {
			ssize_t k = sock_reader_some(&c->rd, buf, sizeof(buf), e);
			if (k <= 0 || cli_write_fd(STDOUT_FILENO, buf, (size_t)k, e) < 0) {
				rc = -1;
				break;
			}
			continue;
		}
		struct pollfd pfd[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN },
		};
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = err_sys(e, "poll");
			break;
		}
		if (pfd[0].revents) {
			n = sock_reader_some(&c->rd, buf, sizeof(buf), e);
			if (n <= 0) {
				if (n < 0)
					rc = err_prefix(e, "reading console");
				else if (stdin_open)
					fprintf(stderr, "\r\nConsole closed by ferryd (VM stopped?).\r\n");
				break;
			}
			if (cli_write_fd(STDOUT_FILENO, buf, (size_t)n, e) < 0) {
				rc = -1;
				break;
			}
		}
		if (pfd[1].revents) {
			char *detach;
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				/* End of piped input: stop sending, keep showing
				 * output until the VM side closes. */
				stdin_open = false;
				if (shutdown(c->fd, SHUT_WR) < 0)
					break;
				continue;
			}
			detach = memchr(buf, CLI_DETACH_KEY, (size_t)n);
			if (detach)
				n = detach - buf;
			if (n > 0 && sock_reader_send(&c->rd, buf, (size_t)n, -1, e) < 0) {
				rc = -1;
				break;
			}
			if (detach) {
				fprintf(stderr, "\r\nDetached from %s.\r\n", name);
				break;
			}
		}
	}
	cli_tty_restore();
	return rc;
}
