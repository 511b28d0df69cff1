/*
 * sl_kafka_props.c - a deployment's librdkafka properties (sl_kafka_props.h).
 */
#include "sl_kafka_props.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define ENV_PREFIX "SLUICE_KAFKA_"

/* The variables of the prefix that are Sluice's own, not property names. */
static const char *const own_vars[] = {"SLUICE_KAFKA_BROKERS", "SLUICE_KAFKA_FETCH_WAIT_MS",
                                       "SLUICE_KAFKA_CONFIG", NULL};

/* Properties set from Sluice's own variables only. */
static const char *const own_props[] = {"bootstrap.servers", "SLUICE_KAFKA_BROKERS",
                                        "fetch.wait.max.ms", "SLUICE_KAFKA_FETCH_WAIT_MS", NULL};

static void add(sl_kafka_props *props, const char *name, size_t nlen, const char *value,
                char *origin)
{
	sl_kafka_prop *p;

	props->p = sl_realloc(props->p, (props->n + 1) * sizeof(*props->p));
	p = &props->p[props->n++];
	p->name = sl_strndup(name, nlen);
	p->value = sl_strdup(value);
	p->origin = origin;
}

static char *trim_left(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

static sl_status load_file(sl_kafka_props *props, const char *path, char *errbuf, size_t errsize)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0;
	sl_status st = SL_OK;

	if (!f)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "SLUICE_KAFKA_CONFIG: cannot read %s: %s", path, strerror(errno));
	while (st == SL_OK && (len = getline(&line, &cap, f)) >= 0) {
		char *s, *eq, *end;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		s = trim_left(line);
		if (*s == '\0' || *s == '#' || *s == '!')
			continue;
		eq = strchr(s, '=');
		end = eq;
		while (end && end > s && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (!eq || end == s) {
			st = sl_err(errbuf, errsize, SL_INVALID,
			            "SLUICE_KAFKA_CONFIG: %s:%d: not a name=value line", path,
			            lineno);
			break;
		}
		add(props, s, (size_t)(end - s), trim_left(eq + 1),
		    sl_asprintf("%s:%d", path, lineno));
	}
	free(line);
	fclose(f);
	return st;
}

/* "SLUICE_KAFKA_SASL_USERNAME" -> "sasl.username" */
static char *prop_name(const char *var, size_t len)
{
	char *name = sl_strndup(var + strlen(ENV_PREFIX), len - strlen(ENV_PREFIX));

	for (char *c = name; *c; c++)
		*c = *c == '_' ? '.' : (char)tolower((unsigned char)*c);
	return name;
}

sl_status sl_kafka_props_load(sl_kafka_props *props, char *const *envp, char *errbuf,
                              size_t errsize)
{
	const char *file = NULL;
	sl_status st;

	props->p = NULL;
	props->n = 0;
	if (!envp)
		envp = environ;
	for (char *const *e = envp; *e; e++)
		if (!strncmp(*e, "SLUICE_KAFKA_CONFIG=", 20) && (*e)[20])
			file = *e + 20;
	if (file && (st = load_file(props, file, errbuf, errsize))) {
		sl_kafka_props_free(props);
		return st;
	}
	/* the variables after the file: set later, they win */
	for (char *const *e = envp; *e; e++) {
		const char *eq = strchr(*e, '=');
		size_t len = eq ? (size_t)(eq - *e) : 0;
		bool own = false;
		char *name;

		if (!eq || strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)))
			continue;
		for (const char *const *o = own_vars; *o && !own; o++)
			own = strlen(*o) == len && !strncmp(*e, *o, len);
		if (own)
			continue;
		if (len == strlen(ENV_PREFIX)) {
			sl_kafka_props_free(props);
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: a variable of no property name", ENV_PREFIX);
		}
		name = prop_name(*e, len);
		add(props, name, strlen(name), eq + 1, sl_strndup(*e, len));
		free(name);
	}
	return SL_OK;
}

void sl_kafka_props_free(sl_kafka_props *props)
{
	for (size_t i = 0; i < props->n; i++) {
		free(props->p[i].name);
		/* a secret does not stay in freed memory */
		explicit_bzero(props->p[i].value, strlen(props->p[i].value));
		free(props->p[i].value);
		free(props->p[i].origin);
	}
	free(props->p);
	props->p = NULL;
	props->n = 0;
}

bool sl_kafka_prop_secret(const char *name)
{
	return strstr(name, "password") || strstr(name, "secret") || strstr(name, ".pem") ||
	       strstr(name, "token") || !strcmp(name, "sasl.oauthbearer.config") ||
	       strstr(name, "sasl.kerberos.keytab");
}

sl_status sl_kafka_props_apply(const sl_kafka_props *props, rd_kafka_conf_t *conf,
                               const char *const *fixed, char *errbuf, size_t errsize)
{
	char why[512];

	for (size_t i = 0; i < props->n; i++) {
		const sl_kafka_prop *p = &props->p[i];
		rd_kafka_conf_res_t res;

		for (const char *const *o = own_props; *o; o += 2)
			if (!strcmp(p->name, o[0]))
				return sl_err(errbuf, errsize, SL_INVALID,
				              "%s: Kafka property %s comes from %s only", p->origin,
				              p->name, o[1]);
		for (const char *const *f = fixed; *f; f += 2)
			if (!strcmp(p->name, f[0]))
				return sl_err(errbuf, errsize, SL_INVALID,
				              "%s: Kafka property %s cannot be changed: Sluice's "
				              "guarantees rest on it being %s",
				              p->origin, p->name, f[1]);
		res = rd_kafka_conf_set(conf, p->name, p->value, why, sizeof(why));
		if (res == RD_KAFKA_CONF_UNKNOWN)
			return sl_err(errbuf, errsize, SL_INVALID, "%s: unknown Kafka property %s",
			              p->origin, p->name);
		if (res != RD_KAFKA_CONF_OK && sl_kafka_prop_secret(p->name)) {
			explicit_bzero(why, sizeof(why)); /* may quote the value */
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: invalid value for Kafka property %s", p->origin,
			              p->name);
		}
		if (res != RD_KAFKA_CONF_OK)
			return sl_err(errbuf, errsize, SL_INVALID, "%s: %s", p->origin, why);
	}
	for (const char *const *f = fixed; *f; f += 2)
		if (rd_kafka_conf_set(conf, f[0], f[1], why, sizeof(why)) != RD_KAFKA_CONF_OK)
			return sl_err(errbuf, errsize, SL_FATAL, "Kafka property %s: %s", f[0],
			              why);
	return SL_OK;
}
