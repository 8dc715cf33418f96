// Benchmarks of the computation core and of the whole request path.
// One person: 30 years x 5 types of monthly slots, 5% of them in arrears.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <ftw.h>
#include <unistd.h>

extern "C" {
#include "../core/core.h"
#include "../rpc/dispatch.h"
#include "../gen/gen.h"
#include "../gen/gen_cmd.h"
#include "../store/store.h"
#include "fixture.h"
#include <msgpack.h>
}

namespace {

constexpr uint32_t kCity = BENCH_CITY;

// The fixture's policy (bench/fixture.c).
struct Policy {
	core_period period{};
	core_policy *policy = static_cast<core_policy *>(std::calloc(1, sizeof(core_policy)));

	Policy() { bench_policy(policy, &period); }
	~Policy() { std::free(policy); }
};

std::vector<core_slot> Timeline()
{
	std::vector<core_slot> slots(BENCH_SLOTS);
	bench_timeline(slots.data());
	return slots;
}

// Reported as seconds per slot: "12.3n" reads 12.3 ns.
void SetPerSlot(benchmark::State &state, size_t slot_count)
{
	state.counters["slots"] = static_cast<double>(slot_count);
	state.counters["time_per_slot"] = benchmark::Counter(
		static_cast<double>(slot_count),
		benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_core_arrears(benchmark::State &state)
{
	Policy policy;
	const core_policy *items[] = { policy.policy };
	core_policy_set set{ items, 1 };
	std::vector<core_slot> slots = Timeline();
	core_timeline timeline{ slots.data(), static_cast<uint32_t>(slots.size()), nullptr, 0, nullptr, 0 };
	core_as_of as_of = core_as_of_make(20250610);
	core_arrears out;
	uint32_t item_count;
	for (auto _ : state) {
		int rc = core_arrears_compute(&set, &timeline, as_of, &out, nullptr, &item_count);
		benchmark::DoNotOptimize(rc);
		benchmark::DoNotOptimize(out);
	}
	// Unpaid months i ≡ −7t (mod 20) differ per type: 18 a type, 90 distinct.
	if (out.months_owed != 90) {
		state.SkipWithError("unexpected months_owed");
	}
	SetPerSlot(state, slots.size());
}
BENCHMARK(BM_core_arrears);

// The same person read in place from the store's run encoding.
void BM_core_arrears_encoded(benchmark::State &state)
{
	Policy policy;
	const core_policy *items[] = { policy.policy };
	core_policy_set set{ items, 1 };
	std::vector<core_slot> slots = Timeline();
	std::vector<uint8_t> runs(core_timeline_encode_max(static_cast<uint32_t>(slots.size())));
	size_t size = core_timeline_encode(slots.data(), static_cast<uint32_t>(slots.size()), runs.data(), runs.size());
	core_timeline timeline{ nullptr, static_cast<uint32_t>(slots.size()), runs.data(), size, nullptr, 0 };
	core_as_of as_of = core_as_of_make(20250610);
	core_arrears out;
	uint32_t item_count;
	for (auto _ : state) {
		int rc = core_arrears_compute(&set, &timeline, as_of, &out, nullptr, &item_count);
		benchmark::DoNotOptimize(rc);
		benchmark::DoNotOptimize(out);
	}
	if (out.months_owed != 90) {
		state.SkipWithError("unexpected months_owed");
	}
	state.counters["bytes_per_slot"] = static_cast<double>(size) / static_cast<double>(slots.size());
	SetPerSlot(state, slots.size());
}
BENCHMARK(BM_core_arrears_encoded);

// Generated persons (gen --seed 1) as the store holds them: what the server
// reads for one single-person request, decoded once, resolved, computed.
struct City {
	std::vector<std::vector<uint8_t>> runs;
	std::vector<uint32_t> slot_counts;
	core_policy *policy = static_cast<core_policy *>(std::calloc(1, sizeof(core_policy)));
	std::vector<core_period> periods;
	size_t slots = 0;
	size_t run_total = 0;
	~City() { std::free(policy); }
};

int CityPerson(void *ctx, const gen_person *p)
{
	City *city = static_cast<City *>(ctx);
	std::vector<uint8_t> buf(core_timeline_encode_max(p->slot_count));
	size_t size = core_timeline_encode(p->slots, p->slot_count, buf.data(), buf.size());
	buf.resize(size);
	city->runs.push_back(buf);
	city->slot_counts.push_back(p->slot_count);
	city->slots += p->slot_count;
	return 0;
}

void BM_core_stored_person_arrears(benchmark::State &state)
{
	static City city;
	static bool made = false;
	gen_config config{ 200, 1, 110000, 0 };
	if (!made) {
		gen_run(&config, CityPerson, &city);
		made = true;
	}
	// The generator's policy for 110000, read back through the JSON path would
	// need proto: build it from the same document instead.
	char *text = nullptr;
	size_t text_size = 0;
	FILE *mem = open_memstream(&text, &text_size);
	gen_policy_write(mem, 110000, &config);
	fclose(mem);
	uint8_t *frame;
	size_t frame_size;
	char err[128];
	proto_json_frame("policy.put", 1, "policy", text, &frame, &frame_size, err, sizeof(err));
	std::free(text);
	proto_message *message = proto_message_new();
	proto_envelope env;
	proto_error perr;
	proto_message_parse(message, frame, frame_size, &env, &perr);
	core_policy *policy = proto_policy_decode(env.params, &perr);
	proto_message_free(message);
	std::free(frame);
	const core_policy *items[] = { policy };
	core_policy_set set{ items, 1 };
	std::vector<core_run> runs(4096);
	core_as_of as_of = core_as_of_make(20251110);
	size_t index = 0;
	size_t slots = 0;
	size_t run_count = 0;
	for (auto _ : state) {
		const std::vector<uint8_t> &person = city.runs[index];
		core_timeline stored{ nullptr, city.slot_counts[index], person.data(), person.size(), nullptr, 0 };
		int64_t n = core_timeline_decode(&stored, runs.data(), static_cast<uint32_t>(runs.size()));
		core_timeline decoded{ nullptr, stored.slot_count, nullptr, 0, runs.data(), static_cast<uint32_t>(n) };
		uint32_t bad;
		core_arrears out;
		uint32_t item_count;
		int rc = core_person_resolve(&set, &decoded, &bad);
		rc |= core_arrears_compute(&set, &decoded, as_of, &out, nullptr, &item_count);
		benchmark::DoNotOptimize(rc);
		slots += stored.slot_count;
		run_count += static_cast<size_t>(n);
		index = (index + 1) % city.runs.size();
	}
	state.counters["slots_per_person"] = static_cast<double>(slots) / static_cast<double>(state.iterations());
	state.counters["runs_per_person"] = static_cast<double>(run_count) / static_cast<double>(state.iterations());
	std::free(policy);
}
BENCHMARK(BM_core_stored_person_arrears);

void PackStr(msgpack_packer *pk, const char *s) { bench_pack_str(pk, s); }
void PackInt(msgpack_packer *pk, const char *key, int64_t v) { bench_pack_int(pk, key, v); }
void PackRequest(msgpack_packer *pk, uint32_t msgid, const char *method) { bench_pack_request(pk, msgid, method); }

std::vector<uint8_t> Frame(const msgpack_sbuffer &sb)
{
	return std::vector<uint8_t>(sb.data, sb.data + sb.size);
}

std::vector<uint8_t> PolicyPut()
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	bench_pack_policy_put(&pk);
	std::vector<uint8_t> frame = Frame(sb);
	msgpack_sbuffer_destroy(&sb);
	return frame;
}

// arrears.compute for one inline person with the benchmark timeline.
std::vector<uint8_t> ArrearsRequest(const std::vector<core_slot> &slots)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	bench_pack_arrears_request(&pk, slots.data(), static_cast<uint32_t>(slots.size()));
	std::vector<uint8_t> frame = Frame(sb);
	msgpack_sbuffer_destroy(&sb);
	return frame;
}

// The whole request path the server runs: parse, validate, compute, encode.
void BM_request_arrears_inline(benchmark::State &state)
{
	dispatch *d = dispatch_new(nullptr, nullptr);
	dispatch_outcome outcome;
	const uint8_t *response;
	size_t response_size;
	std::vector<uint8_t> put = PolicyPut();
	dispatch_frame(d, nullptr, DISPATCH_ALL, put.data(), put.size(), &response, &response_size, &outcome);
	std::vector<core_slot> slots = Timeline();
	std::vector<uint8_t> request = ArrearsRequest(slots);
	for (auto _ : state) {
		dispatch_frame(d, nullptr, DISPATCH_ALL, request.data(), request.size(), &response, &response_size,
			       &outcome);
		benchmark::DoNotOptimize(response);
	}
	// A person error would be far shorter than a result.
	if (response_size < 200) {
		state.SkipWithError("request failed");
	}
	SetPerSlot(state, slots.size());
	dispatch_free(d);
}
BENCHMARK(BM_request_arrears_inline);

int CollectId(void *ctx, const gen_person *p)
{
	auto *ids = static_cast<std::vector<std::string> *>(ctx);
	if (p->slot_count > 0) {
		ids->emplace_back(p->id);
	}
	return 0;
}

int RemoveEntry(const char *path, const struct stat *, int, struct FTW *)
{
	return std::remove(path);
}

// What the server runs for one single-person arrears.compute by stored id,
// without the network: parse, read the person from LMDB, decode, resolve,
// compute, encode. 1,000 generated persons (gen --seed 1) round robin.
void BM_request_arrears_stored(benchmark::State &state)
{
	char dir[] = "/tmp/arrears-bench-XXXXXX";
	if (mkdtemp(dir) == nullptr) {
		state.SkipWithError("mkdtemp failed");
		return;
	}
	std::string data = std::string(dir) + "/store";
	const char *args[] = { "--persons", "1100", "--seed", "1", "--city", "110000", "--data", data.c_str() };
	store *st = nullptr;
	char err[256];
	if (gen_command(8, const_cast<char **>(args)) != 0 ||
	    store_open(data.c_str(), nullptr, &st, err, sizeof(err)) != STORE_OK) {
		state.SkipWithError("gen or store_open failed");
		nftw(dir, RemoveEntry, 8, FTW_DEPTH | FTW_PHYS);
		return;
	}
	std::vector<std::string> ids;
	gen_config config{ 1100, 1, 110000, 0 };
	config.second_city = 310000; // as gen_command sets it
	gen_run(&config, CollectId, &ids);
	ids.resize(ids.size() < 1000 ? ids.size() : 1000);
	std::vector<std::vector<uint8_t>> frames;
	for (size_t i = 0; i < ids.size(); i++) {
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		PackRequest(&pk, static_cast<uint32_t>(i + 1), "arrears.compute");
		msgpack_pack_map(&pk, 2);
		PackInt(&pk, "as_of", 20251110);
		PackStr(&pk, "ids");
		msgpack_pack_array(&pk, 1);
		PackStr(&pk, ids[i].c_str());
		frames.push_back(Frame(sb));
		msgpack_sbuffer_destroy(&sb);
	}
	dispatch *d = dispatch_new(st, nullptr);
	dispatch_outcome outcome{};
	const uint8_t *response = nullptr;
	size_t response_size = 0;
	size_t index = 0;
	size_t short_answers = 0;
	for (auto _ : state) {
		const std::vector<uint8_t> &f = frames[index];
		dispatch_frame(d, nullptr, DISPATCH_ALL, f.data(), f.size(), &response, &response_size, &outcome);
		benchmark::DoNotOptimize(response);
		short_answers += outcome.error || response_size < 200; // an error, not a result
		index = (index + 1) % frames.size();
	}
	if (short_answers > 0) {
		state.SkipWithError("a request failed");
	}
	state.counters["response_bytes"] = static_cast<double>(response_size);
	dispatch_free(d);
	store_close(st);
	nftw(dir, RemoveEntry, 8, FTW_DEPTH | FTW_PHYS);
}
BENCHMARK(BM_request_arrears_stored);

} // namespace

BENCHMARK_MAIN();
