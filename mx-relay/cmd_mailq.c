/* mailq: look at and manage a Redis mail queue, like Postfix's mailq,
 * postqueue -j/-f/-i and postsuper -d/-h/-H. Reads redis_server,
 * redis_password and redis_database from the daemon's configuration file
 * and talks to Redis synchronously (a tool, not a daemon). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include "cfg.h"
#include "queue.h"
#include "redisc.h"

struct mailq_conf {
	char *server, *password;
	long database;
};

static const char mailq_usage[] =
	"Usage: mailq [-c DIR] [--config-file FILE] [--queue mx|out] [--json]\n"
	"             [list | show QID | delete QID|ALL | hold QID|ALL |\n"
	"              release QID|ALL | flush [QID] | count]\n"
	"       mailq -h | --help\n"
	"Lists and manages a Redis mail queue: mx-relay's inbound queue or\n"
	"submission's outbound one (like Postfix's mailq and postsuper).\n"
	"  list           the queued messages (the default)\n"
	"  show QID       one message: its envelope, state and content\n"
	"  delete, hold, release QID|ALL\n"
	"                 remove, park or unpark messages\n"
	"  flush [QID]    try now instead of at the next retry\n"
	"  count          messages per state (active, deferred, hold, total)\n"
	"  -c DIR         configuration folder (default /etc/mailpair)\n"
	"  --config-file  the file to read redis_* from (default\n"
	"                 DIR/mx-relay.cf, or DIR/submission.cf for --queue out)\n"
	"  --queue NAME   mx (the MX inbound queue, default) or out\n"
	"  --json         one JSON object per line (list), or one object\n"
	"  -h, --help     this help\n"
	"redis_server, redis_password and redis_database are read from the\n"
	"config file. See mailq(8).\n";

static int mailq_pair(void *arg, const char *name, const char *value,
    const char *file, int line, struct err *err)
{
	struct mailq_conf *c = arg;
	char **slot = NULL;

	if (strcmp(name, "redis_server") == 0)
		slot = &c->server;
	else if (strcmp(name, "redis_password") == 0)
		slot = &c->password;
	else if (strcmp(name, "redis_database") == 0) {
		if (cfg_parse_int(value, &c->database) < 0)
			return err_set(err, 0, "%s, line %d: bad redis_database",
			    file, line);
		return 0;
	}
	if (slot == NULL)
		return 0;
	free(*slot);
	*slot = strdup(value);
	return 0;
}

/* ---- output ------------------------------------------------------------ */

static void mailq_json_str(const char *s)
{
	putchar('"');
	for (; s != NULL && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void mailq_json_kv(const char *k, const char *v, int comma)
{
	printf("%s\"%s\": ", comma ? ", " : "", k);
	if (v == NULL)
		printf("null");
	else
		mailq_json_str(v);
}

static void mailq_json_msg(const char *qname, const struct queue_msg *m,
    int with_data)
{
	size_t i;

	printf("{");
	mailq_json_kv("queue_name", qname, 0);
	mailq_json_kv("queue_id", m->env.qid, 1);
	mailq_json_kv("state", queue_state_name(m->state), 1);
	printf(", \"arrival_time\": %ld, \"next_attempt\": %lld, "
	    "\"message_size\": %zu, \"attempts\": %d", m->env.arrival,
	    m->next_ms / 1000, m->len, m->attempts);
	mailq_json_kv("sender", m->env.sender, 1);
	mailq_json_kv("last_error", m->last_error, 1);
	mailq_json_kv("client_name", m->env.client_name, 1);
	mailq_json_kv("client_address", m->env.client_addr, 1);
	mailq_json_kv("helo", m->env.helo, 1);
	mailq_json_kv("protocol", m->env.proto, 1);
	printf(", \"recipients\": [");
	for (i = 0; i < m->env.nrcpt; i++) {
		const struct queue_rcpt *r = &m->env.rcpts[i];
		printf("%s{", i ? ", " : "");
		mailq_json_kv("address", r->addr, 0);
		mailq_json_kv("state", queue_rcpt_state_name(r->state), 1);
		mailq_json_kv("delay_reason", r->error, 1);
		printf(", \"attempts\": %d}", r->attempts);
	}
	printf("]");
	if (with_data && m->data != NULL) {
		unsigned char *b64 = malloc(4 * ((m->len + 2) / 3) + 1);
		if (b64 != NULL) {
			EVP_EncodeBlock(b64, (const unsigned char *)m->data,
			    (int)m->len);
			printf(", \"data_base64\": \"%s\"", b64);
			free(b64);
		}
	}
	printf("}\n");
}

static void mailq_text_msg(const struct queue_msg *m)
{
	char when[64];
	time_t t = m->env.arrival;
	size_t i;

	strftime(when, sizeof(when), "%a %b %e %H:%M:%S", localtime(&t));
	printf("%-20s%c %8zu %s  %s\n", m->env.qid,
	    m->state == QUEUE_ST_HOLD ? '!' : m->state == QUEUE_ST_ACTIVE ?
	    '*' : ' ', m->len, when,
	    m->env.sender[0] ? m->env.sender : "MAILER-DAEMON");
	if (m->state == QUEUE_ST_DEFERRED) {
		t = (time_t)(m->next_ms / 1000);
		strftime(when, sizeof(when), "%a %b %e %H:%M:%S", localtime(&t));
		printf("%51s(deferred, %d attempts, next %s)\n", "",
		    m->attempts, when);
	}
	for (i = 0; i < m->env.nrcpt; i++) {
		const struct queue_rcpt *r = &m->env.rcpts[i];
		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		if (r->error != NULL && r->error[0])
			printf("%51s(%s)\n", "", r->error);
		printf("%51s%s\n", "", r->addr);
	}
	printf("\n");
}

/* ---- commands ----------------------------------------------------------- */

static int mailq_list(redisContext *c, const char *qname, int json)
{
	struct queue_msg **msgs;
	struct err err;
	size_t n, i, bytes = 0;

	if (queue_sync_list(c, qname, &msgs, &n, &err) < 0) {
		fprintf(stderr, "mailq: %s\n", err.msg);
		return 2;
	}
	if (!json && n == 0)
		printf("Mail queue is empty\n");
	else if (!json)
		printf("-Queue ID-           --Size-- ----Arrival Time---- "
		    "-Sender/Recipient-------\n");
	for (i = 0; i < n; i++) {
		bytes += msgs[i]->len;
		if (json)
			mailq_json_msg(qname, msgs[i], 0);
		else
			mailq_text_msg(msgs[i]);
	}
	if (!json && n > 0)
		printf("-- %zu Kbytes in %zu Request%s.\n", (bytes + 1023) / 1024,
		    n, n == 1 ? "" : "s");
	queue_msgs_free(msgs, n);
	return 0;
}

static int mailq_show(redisContext *c, const char *qname, const char *qid,
    int json)
{
	struct queue_msg *m;
	struct err err;
	int rc = queue_sync_show(c, qname, qid, &m, &err);

	if (rc < 0) {
		fprintf(stderr, "mailq: %s\n", err.msg);
		return 2;
	}
	if (rc == 0) {
		fprintf(stderr, "mailq: %s: no such message\n", qid);
		return 1;
	}
	if (json) {
		mailq_json_msg(qname, m, 1);
	} else {
		mailq_text_msg(m);
		fwrite(m->data, 1, m->len, stdout);
	}
	queue_msg_free(m);
	return 0;
}

typedef int mailq_op_fn(redisContext *c, const char *name, const char *qid,
    struct err *err);

static int mailq_op(redisContext *c, const char *qname, const char *qid,
    mailq_op_fn *fn, const char *what, int json)
{
	struct queue_msg **msgs = NULL;
	struct err err;
	size_t n = 0, i;
	int rc, done = 0;

	if (strcmp(qid, "ALL") == 0) {
		if (queue_sync_list(c, qname, &msgs, &n, &err) < 0) {
			fprintf(stderr, "mailq: %s\n", err.msg);
			return 2;
		}
	}
	for (i = 0; i < (msgs != NULL ? n : 1); i++) {
		const char *id = msgs != NULL ? msgs[i]->env.qid : qid;
		rc = fn(c, qname, id, &err);
		if (rc < 0) {
			fprintf(stderr, "mailq: %s: %s\n", id, err.msg);
			queue_msgs_free(msgs, n);
			return 2;
		}
		done += rc;
		if (rc > 0 && !json)
			printf("mailq: %s: %s\n", id, what);
	}
	queue_msgs_free(msgs, n);
	if (json)
		printf("{\"%s\": %d}\n", what, done);
	if (done == 0 && msgs == NULL) {
		fprintf(stderr, "mailq: %s: no such message (or not in a state "
		    "that allows it)\n", qid);
		return 1;
	}
	return 0;
}

static int mailq_run(redisContext *c, const char *qname, int json,
    int argc, char **argv)
{
	const char *cmd = argc > 0 ? argv[0] : "list";
	const char *arg = argc > 1 ? argv[1] : NULL;
	struct queue_counts qc;
	struct err err;
	int n;

	if (strcmp(cmd, "list") == 0)
		return mailq_list(c, qname, json);
	if (strcmp(cmd, "count") == 0) {
		if (queue_sync_counts(c, qname, &qc, &err) < 0) {
			fprintf(stderr, "mailq: %s\n", err.msg);
			return 2;
		}
		if (json)
			printf("{\"active\": %ld, \"deferred\": %ld, \"hold\": %ld, "
			    "\"total\": %ld}\n", qc.active, qc.deferred, qc.hold,
			    qc.total);
		else
			printf("active %ld\ndeferred %ld\nhold %ld\ntotal %ld\n",
			    qc.active, qc.deferred, qc.hold, qc.total);
		return 0;
	}
	if (strcmp(cmd, "flush") == 0) {
		if ((n = queue_sync_flush(c, qname, arg, &err)) < 0) {
			fprintf(stderr, "mailq: %s\n", err.msg);
			return 2;
		}
		if (json)
			printf("{\"flushed\": %d}\n", n);
		else
			printf("mailq: %d message%s scheduled for delivery now\n",
			    n, n == 1 ? "" : "s");
		return 0;
	}
	if (arg == NULL) {
		fputs(mailq_usage, stderr);
		return 2;
	}
	if (strcmp(cmd, "show") == 0)
		return mailq_show(c, qname, arg, json);
	if (strcmp(cmd, "delete") == 0)
		return mailq_op(c, qname, arg, queue_sync_delete, "deleted", json);
	if (strcmp(cmd, "hold") == 0)
		return mailq_op(c, qname, arg, queue_sync_hold, "held", json);
	if (strcmp(cmd, "release") == 0)
		return mailq_op(c, qname, arg, queue_sync_release, "released",
		    json);
	fputs(mailq_usage, stderr);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config-file", required_argument, NULL, 'f' },
		{ "queue", required_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = "/etc/mailpair", *file = NULL, *qname = "mx";
	struct mailq_conf conf = { NULL, NULL, 0 };
	char path[4096];
	struct err err;
	redisContext *c;
	int ch, json = 0, rc;

	while ((ch = getopt_long(argc, argv, "c:jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': dir = optarg; break;
		case 'f': file = optarg; break;
		case 'q': qname = optarg; break;
		case 'j': json = 1; break;
		case 'h': fputs(mailq_usage, stdout); return 0;
		default: fputs(mailq_usage, stderr); return 2;
		}
	}
	if (file == NULL) {
		snprintf(path, sizeof(path), "%s/%s", dir,
		    strcmp(qname, "out") == 0 ? "submission.cf" : "mx-relay.cf");
		file = path;
	}
	if (cfg_read_pairs(file, mailq_pair, &conf, &err) < 0) {
		fprintf(stderr, "mailq: %s\n", err.msg);
		free(conf.server);
		free(conf.password);
		return 2;
	}
	c = redisc_connect_sync(conf.server ? conf.server : "127.0.0.1:6379",
	    conf.password, (int)conf.database, 5000, &err);
	free(conf.server);
	free(conf.password);
	if (c == NULL) {
		fprintf(stderr, "mailq: %s\n", err.msg);
		return 2;
	}
	rc = mailq_run(c, qname, json, argc - optind, argv + optind);
	redisFree(c);
	return rc;
}
