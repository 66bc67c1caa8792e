// Package evalcore is sigedge's Statsig evaluation engine. It reproduces the
// results of Statsig's server-core SDK ("SC", statsig-rust; reference
// statsig-node-core 0.23.2) bit for bit: gates (segments, holdouts),
// dynamic configs, experiments, layers, client initialize responses and
// exposure events. It is pure: no I/O, no globals, no goroutines.
//
// # Rule sets
//
//	rs, err := evalcore.Compile(payload, evalcore.CompileOptions{})
//
// Compile reads both download_config_specs formats (dcs-v2 maps with a
// condition_map, and v1 arrays with inline conditions) into one immutable,
// indexed model that any number of goroutines may share. A malformed spec or
// condition is dropped and listed in rs.Problems(); a payload that is not a
// rule set is an error; {"has_updates":false} yields ErrNoUpdates (keep the
// current model). ConvertToV1 / ConvertToV2 translate payloads between the
// formats (ConvertToV1 writes hashed_sdk_key_used only when asked).
//
// # Evaluation
//
//	e := evalcore.NewEvaluator(rs, evalcore.EvaluatorOptions{
//		Countries: countrylookup.New(), // github.com/statsig-io/ip3country-go, built once by the caller
//		IDLists:   store,               // e.g. *evalcore.IDListStore
//	})
//	u, err := evalcore.ParseUser(userJSON)
//	g := e.CheckGate(u, "my_gate")       // GateResult
//	c := e.GetConfig(u, "my_config")     // experiments as experiments, others as dynamic configs
//	x := e.GetExperiment(u, "my_exp")    // ConfigResult
//	l := e.GetLayer(u, "my_layer")       // LayerResult
//	b, err := e.ClientInitializeResponse(u, evalcore.InitOptions{Hash: evalcore.HashDJB2})
//
// GateValue is CheckGate's value alone. In the steady state neither
// allocates: evaluation contexts are pooled, nested-gate and hash memos are
// per-context slices indexed at compile time, and results share the
// Evaluator's interned exposure lists. Results carry the value (config
// values are raw JSON shared with the RuleSet: read-only), rule id, group
// name, id type, secondary and undelegated secondary exposures (shared,
// read-only), explicit parameters, allocated experiment, experiment flags,
// version, sampling information and the reason (Recognized, Unrecognized,
// Unsupported, Error).
//
// Per-user work is done once per User and kept on it: the default user-agent
// parse. Hashing a salt with a unit id uses a SHA-256 midstate of the salt
// prepared at compile time and finishes with SHA-NI where the CPU has it
// (internal/sha256x).
//
// # Exposures
//
// AppendGateExposure, AppendConfigExposure and AppendLayerExposure append one
// event JSON object each (statsig::gate_exposure, statsig::config_exposure,
// statsig::layer_exposure) in SC's shape: metadata with reason, lcut,
// receivedAt and configVersion, the user without privateAttributes, and the
// secondary exposures as SC logs them (repeats kept).
//
// # ID lists
//
// IDListStore holds ID lists as copy-on-write snapshots: evaluations read
// without locks while SetList / ApplyChanges / DeleteList swap in new
// versions. Any IDLists implementation can be passed instead.
//
// # Fidelity notes
//
// SC's behaviour is copied including its corner cases: one mutable result
// shared by nested evaluations (stale rule ids and group names leak), the
// nested-gate memo (per evaluation, per initialize response), unsupported
// conditions keeping the partial AND, the 300-deep nesting limit (an Error
// result), a bandit's ":explore" rule-id suffix (which a new-style layer
// delegating to it reports after its own rule id), and the new layer
// evaluation's exposure bookkeeping (a delegate passed over leaves its
// exposures to the next rule). Case-insensitive operators lower-case like
// Rust (İ, final sigma). str_matches patterns are read the way fancy-regex
// reads them: \d, \w, \s and \b are Unicode-aware, {,n} is a quantifier,
// possessive quantifiers, atomic groups, look-around and back-references run
// on a backtracking engine, and what Rust rejects (\Q, (?-u), ...) never
// matches; class set operations (&&, --) and \p{Emoji} are not supported.
// Target-array numbers are keyed the way SC prints them after the reference
// runner's JavaScript round trip (1e21 as "1e21", 9.0 as "9"). Where SC would
// crash (a dotted-quad IP of 2^32 or more; an experiment_group condition
// that reaches its own experiment, a stack overflow) evalcore answers "no
// country" and the nesting-limit error.
//
// In initialize responses SC also writes configs' and layers' JSON as it is
// when it is an object or a boolean (null when unset, {} for other JSON),
// lists contextual bandits with the dynamic configs, and evaluates the
// session-replay targeting gate after every spec without resetting the
// result; an entry that hits the nesting limit makes the whole response
// SC's empty one (no entries, time 0, has_updates false). SC walks its spec
// maps in a random order, so where the shared memo or a leaked result makes
// the order visible its answers vary from run to run; evalcore uses sorted
// name order. SC samples session recording at random for rates between 0
// and 1; evalcore uses a hash of the user's stable or user id instead.
package evalcore
