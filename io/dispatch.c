/* The method table and the compute loop over persons. */
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

struct dispatch {
	struct core_policy **policies; /* sorted by city, owned */
	uint32_t policy_count;
	struct proto_message *message;
	struct proto_writer *writer;
	struct proto_person_buf person_buf;
	struct core_arrears_item *items;
	struct core_duplicate *duplicates;
	uint32_t scratch_capacity; /* of items and duplicates */
};

struct dispatch *dispatch_new(void)
{
	struct dispatch *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return NULL;
	}
	d->message = proto_message_new();
	d->writer = proto_writer_new();
	d->policies = calloc(DISPATCH_CITIES_MAX, sizeof(*d->policies));
	if (d->message == NULL || d->writer == NULL || d->policies == NULL) {
		dispatch_free(d);
		return NULL;
	}
	return d;
}

void dispatch_free(struct dispatch *d)
{
	if (d == NULL) {
		return;
	}
	for (uint32_t i = 0; i < d->policy_count; i++) {
		free(d->policies[i]);
	}
	free(d->policies);
	proto_message_free(d->message);
	proto_writer_free(d->writer);
	proto_person_buf_free(&d->person_buf);
	free(d->items);
	free(d->duplicates);
	free(d);
}

static struct core_policy_set policy_set(const struct dispatch *d)
{
	return (struct core_policy_set){ (const struct core_policy *const *)d->policies, d->policy_count };
}

static void handle_ping(struct dispatch *d, const struct proto_envelope *env)
{
	proto_write_pong(d->writer, env->msgid);
}

static void handle_policy_put(struct dispatch *d, const struct proto_envelope *env)
{
	struct proto_error err;
	struct core_policy *p = proto_policy_decode(env->params, &err);
	if (p == NULL) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	uint32_t i = 0;
	while (i < d->policy_count && d->policies[i]->city < p->city) {
		i++;
	}
	if (i < d->policy_count && d->policies[i]->city == p->city) {
		free(d->policies[i]);
	} else if (d->policy_count == DISPATCH_CITIES_MAX) {
		free(p);
		proto_error_set(&err, PROTO_TOO_LARGE, "too many city policies", "policy.city");
		proto_write_error(d->writer, env->msgid, &err);
		return;
	} else {
		memmove(&d->policies[i + 1], &d->policies[i], sizeof(*d->policies) * (d->policy_count - i));
		d->policy_count++;
	}
	d->policies[i] = p;
	proto_write_ok(d->writer, env->msgid);
}

static void handle_policy_get(struct dispatch *d, const struct proto_envelope *env)
{
	struct proto_error err;
	uint32_t city;
	if (proto_city_decode(env->params, "city", &city, &err) != PROTO_OK) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	struct core_policy_set set = policy_set(d);
	const struct core_policy *p = core_policy_find(&set, city);
	if (p == NULL) {
		proto_error_set(&err, PROTO_NOT_FOUND, "no policy for this city", "city");
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	proto_write_policy(d->writer, env->msgid, p);
}

static bool scratch_reserve(struct dispatch *d, uint32_t slot_count)
{
	if (slot_count <= d->scratch_capacity) {
		return true;
	}
	struct core_arrears_item *items = realloc(d->items, sizeof(*items) * slot_count);
	if (items != NULL) {
		d->items = items;
	}
	struct core_duplicate *dups = realloc(d->duplicates, sizeof(*dups) * slot_count);
	if (dups != NULL) {
		d->duplicates = dups;
	}
	if (items == NULL || dups == NULL) {
		return false;
	}
	d->scratch_capacity = slot_count;
	return true;
}

/* Computes one valid person and writes its result, or its error. */
static void compute_person(struct dispatch *d, const struct proto_compute *req, const struct proto_person *person,
			   const char *path, uint32_t index)
{
	struct core_policy_set set = policy_set(d);
	struct core_timeline timeline = { person->slots, person->slot_count, NULL, 0 };
	const struct core_timeline *tl = &timeline;
	struct proto_error err;
	uint32_t bad;
	int rc = core_person_resolve(&set, tl, &bad);
	if (rc == CORE_ERR_NO_POLICY) {
		proto_error_set(&err, PROTO_NOT_FOUND, "no policy for this city", "%06u", person->slots[bad].city);
	} else if (rc == CORE_ERR_NO_PERIOD) {
		proto_error_set(&err, PROTO_INVALID_ARGUMENT, "month before the city's first period",
				"%s[%u].slots[%u].month", path, index, bad);
	} else if (!scratch_reserve(d, person->slot_count)) {
		rc = proto_error_set(&err, PROTO_INTERNAL, "out of memory", NULL);
	}
	if (rc != CORE_OK) {
		proto_write_person_error(d->writer, person->id, CORE_ID_SIZE, &err);
		return;
	}
	switch (req->method) {
	case PROTO_ARREARS: {
		struct core_arrears a;
		uint32_t item_count = 0;
		rc = core_arrears_compute(&set, tl, req->as_of, &a, req->detail ? d->items : NULL, &item_count);
		if (rc == CORE_OK) {
			proto_write_arrears(d->writer, person->id, &a, req->detail, d->items, item_count);
		}
		break;
	}
	case PROTO_YEARS: {
		struct core_years y;
		uint32_t dup_count;
		rc = core_years_compute(&set, tl, req->as_of, &y, d->duplicates, &dup_count);
		if (rc == CORE_OK) {
			proto_write_years(d->writer, person->id, &y, d->duplicates, dup_count);
		}
		break;
	}
	case PROTO_RETIREMENT: {
		struct core_retirement r;
		rc = core_retirement_check(&set, core_id_birth_month(person->id), person->class_, tl, req->as_of,
					   req->elect_month, &r);
		if (rc == CORE_OK) {
			proto_write_retirement(d->writer, person->id, &r);
		}
		break;
	}
	case PROTO_HOUSING: {
		struct core_housing h;
		rc = core_housing_check(&set, core_policy_find(&set, req->city), tl, req->as_of, &h);
		if (rc == CORE_OK) {
			proto_write_housing(d->writer, person->id, req->city, &h);
		}
		break;
	}
	default: {
		struct core_medical m;
		rc = core_medical_status(&set, tl, req->as_of, &m);
		if (rc == CORE_OK) {
			proto_write_medical(d->writer, person->id, &m);
		}
		break;
	}
	}
	if (rc == CORE_ERR_OVERFLOW) {
		proto_error_set(&err, PROTO_INVALID_ARGUMENT, "an amount passes 2^53 fen", "overflow");
		proto_write_person_error(d->writer, person->id, CORE_ID_SIZE, &err);
	} else if (rc == CORE_ERR_ELECT_MONTH) {
		proto_error_set(&err, PROTO_INVALID_ARGUMENT, "elect_month outside this person's range", "elect_month");
		proto_write_person_error(d->writer, person->id, CORE_ID_SIZE, &err);
	}
}

static void handle_compute(struct dispatch *d, const struct proto_envelope *env, uint8_t method)
{
	struct proto_compute req;
	struct proto_error err;
	if (proto_compute_decode(env->params, method, &req, &err) != PROTO_OK) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	struct core_policy_set set = policy_set(d);
	if (method == PROTO_HOUSING && core_policy_find(&set, req.city) == NULL) {
		proto_error_set(&err, PROTO_NOT_FOUND, "no policy for this city", "%06u", req.city);
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	/* No store in this build: a scan page is empty and every stored id unknown. */
	bool scan = req.selector == PROTO_SELECT_SCAN;
	proto_write_results_begin(d->writer, env->msgid, scan ? 0 : req.person_count, scan);
	for (uint32_t i = 0; i < req.person_count; i++) {
		const char *id;
		size_t id_size;
		if (req.selector == PROTO_SELECT_IDS) {
			if (proto_compute_id(&req, i, &id, &id_size, &err)) {
				proto_error_set(&err, PROTO_NOT_FOUND, "no such person", "ids[%u]", i);
			}
			proto_write_person_error(d->writer, id, id_size, &err);
			continue;
		}
		struct proto_person person;
		if (proto_person_decode(&req, i, &d->person_buf, &person, &id, &id_size, &err) != PROTO_OK) {
			proto_write_person_error(d->writer, id, id_size, &err);
			continue;
		}
		compute_person(d, &req, &person, "persons", i);
	}
	if (scan) {
		proto_write_results_next(d->writer, NULL, 0);
	}
}

static void handle_arrears(struct dispatch *d, const struct proto_envelope *env)
{
	handle_compute(d, env, PROTO_ARREARS);
}
static void handle_years(struct dispatch *d, const struct proto_envelope *env)
{
	handle_compute(d, env, PROTO_YEARS);
}
static void handle_retirement(struct dispatch *d, const struct proto_envelope *env)
{
	handle_compute(d, env, PROTO_RETIREMENT);
}
static void handle_housing(struct dispatch *d, const struct proto_envelope *env)
{
	handle_compute(d, env, PROTO_HOUSING);
}
static void handle_medical(struct dispatch *d, const struct proto_envelope *env)
{
	handle_compute(d, env, PROTO_MEDICAL);
}

static const struct {
	const char *name;
	void (*handle)(struct dispatch *d, const struct proto_envelope *env);
} methods[] = {
	{ "ping", handle_ping },
	{ "policy.put", handle_policy_put },
	{ "policy.get", handle_policy_get },
	{ "arrears.compute", handle_arrears },
	{ "years.compute", handle_years },
	{ "retirement.check", handle_retirement },
	{ "housing.check", handle_housing },
	{ "medical.status", handle_medical },
};

bool dispatch_frame(struct dispatch *d, const uint8_t *frame, size_t frame_size, const uint8_t **response,
		    size_t *response_size)
{
	struct proto_envelope env;
	struct proto_error err;
	proto_writer_reset(d->writer);
	bool close = false;
	if (proto_message_parse(d->message, frame, frame_size, &env, &err) != PROTO_OK) {
		proto_write_error(d->writer, env.msgid, &err);
		close = true;
	} else {
		uint32_t i = 0;
		uint32_t count = sizeof(methods) / sizeof(methods[0]);
		while (i < count && !(strlen(methods[i].name) == env.method_size &&
				      memcmp(methods[i].name, env.method, env.method_size) == 0)) {
			i++;
		}
		if (i < count) {
			methods[i].handle(d, &env);
		} else {
			proto_error_set(&err, PROTO_UNKNOWN_METHOD, "unknown method", NULL);
			proto_write_error(d->writer, env.msgid, &err);
		}
		if (env.kind == PROTO_KIND_NOTIFICATION) {
			proto_writer_reset(d->writer);
		}
	}
	*response = proto_writer_data(d->writer, response_size);
	if (*response == NULL) {
		proto_writer_reset(d->writer);
		proto_error_set(&err, PROTO_INTERNAL, "out of memory writing the response", NULL);
		proto_write_error(d->writer, env.msgid, &err);
		*response = proto_writer_data(d->writer, response_size);
	}
	return close;
}

void dispatch_reject(struct dispatch *d, int code, const char *message, const uint8_t **response,
		     size_t *response_size)
{
	struct proto_error err;
	proto_writer_reset(d->writer);
	proto_error_set(&err, code, message, NULL);
	proto_write_error(d->writer, 0, &err);
	*response = proto_writer_data(d->writer, response_size);
}
