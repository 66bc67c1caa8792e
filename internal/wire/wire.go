// Package wire holds the names and small types that several sigedge packages share on the wire:
// Statsig's HTTP headers, the headers of event messages in JetStream, and the short key hash that
// stands for an SDK key in logs, metrics and subjects (secret keys are never logged).
package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// HTTP headers the Statsig SDKs send and read (STATSIG-API-KEY and so on; header names are
// case-insensitive). They are spelled in Go's canonical form so that http.Header lookups on hot
// paths find them without canonicalising, and allocating, on every request.
const (
	HeaderAPIKey          = "Statsig-Api-Key"
	HeaderSDKType         = "Statsig-Sdk-Type"
	HeaderSDKVersion      = "Statsig-Sdk-Version"
	HeaderClientTime      = "Statsig-Client-Time"
	HeaderEventCount      = "Statsig-Event-Count"
	HeaderSessionID       = "Statsig-Server-Session-Id"
	HeaderRetryCount      = "Statsig-Retry-Count"
	HeaderLanguageVersion = "Statsig-Sdk-Language-Version"
)

// Headers of an event-batch message in the JetStream event stream. The body of such a message is
// the batch as the SDK sent it, decompressed: {"events":[…],"statsigMetadata":{…}}, encoded as
// MsgEncoding says (read it with DecodeBody).
const (
	// MsgSDKKey is the key the batch is for (a server or client key).
	MsgSDKKey = "Sigedge-Sdk-Key"
	// MsgSDKType and MsgSDKVersion are what the sending SDK said it was.
	MsgSDKType    = "Sigedge-Sdk-Type"
	MsgSDKVersion = "Sigedge-Sdk-Version"
	// MsgReceivedAt is when the proxy received the batch (Unix milliseconds).
	MsgReceivedAt = "Sigedge-Received-At"
	// MsgEventCount is the number of events in the batch.
	MsgEventCount = "Sigedge-Event-Count"
	// MsgEndpoint is the intake path the batch came in on: "log_event" or "rgstr".
	MsgEndpoint = "Sigedge-Endpoint"
	// MsgSource says who produced the batch: "sdk" or "proxy" (exposures of HTTP evaluations).
	MsgSource = "Sigedge-Source"
	// MsgClientTime is the STATSIG-CLIENT-TIME the SDK sent (Unix milliseconds), when it sent one.
	MsgClientTime = "Sigedge-Client-Time"
	// MsgPart is "i/n" when a batch larger than the server's max payload was split into n messages
	// (i from 1); absent when the batch is one message.
	MsgPart = "Sigedge-Part"
	// MsgEncoding is how the body is encoded: EncodingS2, or absent for the JSON itself.
	MsgEncoding = "Sigedge-Encoding"
)

// Values of MsgEndpoint and MsgSource.
const (
	EndpointLogEvent = "log_event"
	EndpointRgstr    = "rgstr"
	SourceSDK        = "sdk"
	SourceProxy      = "proxy"
)

// Dead-letter message headers, added to a batch Statsig refused for good.
const (
	MsgDeadStatus = "Sigedge-Dead-Status"
	MsgDeadReason = "Sigedge-Dead-Reason"
	MsgDeadAt     = "Sigedge-Dead-At"
)

// KeyHash is a short, stable, non-reversible name for an SDK key: the first 12 hex digits of its
// SHA-256. It names the key in logs, metrics and subjects.
func KeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:6])
}

// IsServerKey reports whether key is a server secret key.
func IsServerKey(key string) bool { return strings.HasPrefix(key, "secret-") }

// IsClientKey reports whether key is a client SDK key.
func IsClientKey(key string) bool { return strings.HasPrefix(key, "client-") }

// EventSubject is the subject a key's event batches are published to.
func EventSubject(prefix, key string) string { return prefix + "." + KeyHash(key) }
