package evalcore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

var sections = []string{"feature_gates", "dynamic_configs", "layer_configs"}

// V1Options tunes ConvertToV1.
type V1Options struct {
	// HashedSDKKeyUsed, when set, is written as "hashed_sdk_key_used" (djb2 of
	// the server secret the legacy SDK uses, which rejects a mismatch). When
	// empty the field is left out, whatever the input carried.
	HashedSDKKeyUsed string
}

// ConvertToV2 turns a v1 download_config_specs payload into an equivalent
// dcs-v2 payload (conditions moved into condition_map, user-bucket arrays into
// {"bucket": true} maps, layers into experiment_to_layer, defaults filled in
// the way the reference runner's converter does). A dcs-v2 payload is
// returned unchanged.
func ConvertToV2(payload []byte) ([]byte, error) {
	top, err := decodeObject(payload)
	if err != nil {
		return nil, fmt.Errorf("evalcore: payload is not a JSON object: %w", err)
	}
	if isV2(top) {
		return payload, nil
	}
	out, err := convertV1ToV2(top)
	if err != nil {
		return nil, err
	}
	return marshalObject(out)
}

// convertV1ToV2 converts a decoded v1 payload to dcs-v2.
func convertV1ToV2(top map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(top)+3)
	for k, v := range top {
		if k == "layers" || isSection(k) {
			continue
		}
		out[k] = v
	}
	condMap := map[string]json.RawMessage{}
	condIDs := map[string]string{}
	condID := func(raw json.RawMessage) (string, error) {
		c, err := decodeObject(raw)
		if err != nil {
			return "", errors.New("condition is not an object")
		}
		typ, _ := jsonString(c["type"])
		op, _ := jsonString(c["operator"])
		if tv, ok := c["targetValue"]; ok && typ == "user_bucket" && (op == "any" || op == "none") && firstByte(tv) == '[' {
			var items []any
			if v, err := decodeAny(tv); err == nil {
				items, _ = v.([]any)
			}
			m := make(map[string]json.RawMessage, len(items))
			for _, it := range items {
				m[jsString(it)] = json.RawMessage("true")
			}
			b, _ := marshalObject(m)
			c["targetValue"] = b
		}
		if raw, ok := c["idType"]; !ok || isNull(raw) {
			c["idType"] = json.RawMessage(`"userID"`)
		}
		key, _ := marshalObject(c)
		if id, ok := condIDs[string(key)]; ok {
			return id, nil
		}
		id := djb2String(string(key))
		for condMap[id] != nil {
			id += "x"
		}
		condIDs[string(key)] = id
		condMap[id] = key
		return id, nil
	}
	for _, sec := range sections {
		raw, ok := top[sec]
		if !ok || isNull(raw) {
			out[sec] = json.RawMessage("{}")
			continue
		}
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("evalcore: v1 %s is not an array: %w", sec, err)
		}
		specs := map[string]json.RawMessage{}
		for i, sraw := range list {
			s, err := decodeObject(sraw)
			if err != nil {
				return nil, fmt.Errorf("evalcore: v1 %s[%d] is not an object", sec, i)
			}
			name, ok := jsonString(s["name"])
			if !ok {
				return nil, fmt.Errorf("evalcore: v1 %s[%d] has no name", sec, i)
			}
			delete(s, "name")
			if raw, ok := s["idType"]; !ok || isNull(raw) {
				s["idType"] = json.RawMessage(`"userID"`)
			}
			if raw, ok := s["entity"]; !ok || isNull(raw) {
				s["entity"], _ = json.Marshal(inferEntity(sec, s))
			}
			var rules []json.RawMessage
			if rr, ok := s["rules"]; ok && !isNull(rr) {
				if err := json.Unmarshal(rr, &rules); err != nil {
					return nil, fmt.Errorf("evalcore: v1 %s/%s rules: %w", sec, name, err)
				}
			}
			newRules := make([]json.RawMessage, 0, len(rules))
			for _, rraw := range rules {
				r, err := decodeObject(rraw)
				if err != nil {
					return nil, fmt.Errorf("evalcore: v1 %s/%s: rule is not an object", sec, name)
				}
				if raw, ok := r["idType"]; !ok || isNull(raw) {
					r["idType"] = json.RawMessage(`"userID"`)
				}
				if raw, ok := r["name"]; !ok || isNull(raw) {
					if id, ok := r["id"]; ok {
						r["name"] = id
					}
				}
				var conds []json.RawMessage
				if cr, ok := r["conditions"]; ok && !isNull(cr) {
					if err := json.Unmarshal(cr, &conds); err != nil {
						return nil, fmt.Errorf("evalcore: v1 %s/%s conditions: %w", sec, name, err)
					}
				}
				ids := make([]string, 0, len(conds))
				for _, craw := range conds {
					id, err := condID(craw)
					if err != nil {
						return nil, fmt.Errorf("evalcore: v1 %s/%s: %w", sec, name, err)
					}
					ids = append(ids, id)
				}
				r["conditions"], _ = json.Marshal(ids)
				b, _ := marshalObject(r)
				newRules = append(newRules, b)
			}
			s["rules"], _ = json.Marshal(newRules)
			specs[name], _ = marshalObject(s)
		}
		out[sec], _ = marshalObject(specs)
	}
	e2l := map[string]string{}
	if lr, ok := top["layers"]; ok && !isNull(lr) {
		var layers map[string][]string
		if err := json.Unmarshal(lr, &layers); err == nil {
			for layer, exps := range layers {
				for _, e := range exps {
					e2l[e] = layer
				}
			}
		}
	}
	out["experiment_to_layer"], _ = json.Marshal(e2l)
	out["condition_map"], _ = marshalObject(condMap)
	out["response_format"] = json.RawMessage(`"dcs-v2"`)
	if _, ok := out["has_updates"]; !ok {
		out["has_updates"] = json.RawMessage("true")
	}
	return out, nil
}

// ConvertToV1 turns a dcs-v2 payload into an equivalent v1 payload for
// legacy SDKs (go-sdk, statsig-node): arrays of named specs, conditions
// inline, user-bucket maps as sorted number arrays, layers rebuilt from
// experiment_to_layer. A v1 payload is returned with only
// hashed_sdk_key_used adjusted.
func ConvertToV1(payload []byte, opts V1Options) ([]byte, error) {
	top, err := decodeObject(payload)
	if err != nil {
		return nil, fmt.Errorf("evalcore: payload is not a JSON object: %w", err)
	}
	setKey := func(m map[string]json.RawMessage) {
		delete(m, "hashed_sdk_key_used")
		if opts.HashedSDKKeyUsed != "" {
			m["hashed_sdk_key_used"], _ = json.Marshal(opts.HashedSDKKeyUsed)
		}
	}
	if !isV2(top) {
		setKey(top)
		return marshalObject(top)
	}
	condMap := map[string]json.RawMessage{}
	if cm, ok := top["condition_map"]; ok && !isNull(cm) {
		if condMap, err = decodeObject(cm); err != nil {
			return nil, fmt.Errorf("evalcore: condition_map: %w", err)
		}
	}
	out := make(map[string]json.RawMessage, len(top))
	for k, v := range top {
		switch k {
		case "condition_map", "response_format", "experiment_to_layer":
			continue
		}
		if isSection(k) {
			continue
		}
		out[k] = v
	}
	for _, sec := range sections {
		specs := map[string]json.RawMessage{}
		if raw, ok := top[sec]; ok && !isNull(raw) {
			if specs, err = decodeObject(raw); err != nil {
				return nil, fmt.Errorf("evalcore: %s: %w", sec, err)
			}
		}
		list := make([]json.RawMessage, 0, len(specs))
		for _, name := range sortedKeys(specs) {
			s, err := decodeObject(specs[name])
			if err != nil {
				return nil, fmt.Errorf("evalcore: %s/%s is not an object", sec, name)
			}
			s["name"], _ = json.Marshal(name)
			var rules []json.RawMessage
			if rr, ok := s["rules"]; ok && !isNull(rr) {
				if err := json.Unmarshal(rr, &rules); err != nil {
					return nil, fmt.Errorf("evalcore: %s/%s rules: %w", sec, name, err)
				}
			}
			for i, rraw := range rules {
				r, err := decodeObject(rraw)
				if err != nil {
					return nil, fmt.Errorf("evalcore: %s/%s: rule is not an object", sec, name)
				}
				var keys []string
				_ = json.Unmarshal(r["conditions"], &keys)
				conds := make([]json.RawMessage, 0, len(keys))
				for _, k := range keys {
					craw, ok := condMap[k]
					if !ok {
						return nil, fmt.Errorf("evalcore: %s/%s: condition %q missing from condition_map", sec, name, k)
					}
					conds = append(conds, v2ConditionToV1(craw))
				}
				r["conditions"], _ = json.Marshal(conds)
				rules[i], _ = marshalObject(r)
			}
			if rules != nil {
				s["rules"], _ = json.Marshal(rules)
			}
			b, _ := marshalObject(s)
			list = append(list, b)
		}
		out[sec], _ = json.Marshal(list)
	}
	layers := map[string][]string{}
	if raw, ok := top["experiment_to_layer"]; ok && !isNull(raw) {
		var e2l map[string]string
		if err := json.Unmarshal(raw, &e2l); err == nil {
			for _, exp := range sortedKeys(e2l) {
				layers[e2l[exp]] = append(layers[e2l[exp]], exp)
			}
		}
	}
	out["layers"], _ = json.Marshal(layers)
	setKey(out)
	return marshalObject(out)
}

// v2ConditionToV1 turns an object-form target into the v1 array form.
func v2ConditionToV1(raw json.RawMessage) json.RawMessage {
	c, err := decodeObject(raw)
	if err != nil {
		return raw
	}
	tv, ok := c["targetValue"]
	if !ok || firstByte(tv) != '{' {
		return raw
	}
	m, err := decodeObject(tv)
	if err != nil {
		return raw
	}
	var keys []string
	for k, v := range m {
		if truthy(v) {
			keys = append(keys, k)
		}
	}
	typ, _ := jsonString(c["type"])
	if typ == "user_bucket" {
		nums := make([]float64, 0, len(keys))
		for _, k := range keys {
			f, err := strconv.ParseFloat(k, 64)
			if err != nil {
				return raw // not a bucket map: keep as is
			}
			nums = append(nums, f)
		}
		sort.Float64s(nums)
		b := []byte{'['}
		for i, f := range nums {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, jsNumberString(f)...)
		}
		c["targetValue"] = append(b, ']')
	} else {
		sort.Strings(keys)
		c["targetValue"], _ = json.Marshal(keys)
	}
	out, _ := marshalObject(c)
	return out
}

// truthy is JavaScript truthiness of a JSON value.
func truthy(raw json.RawMessage) bool {
	switch s := string(bytes.TrimSpace(raw)); s {
	case "false", "null", "0", `""`, "-0":
		return false
	default:
		if f, ok := jsonNumber(raw); ok && f == 0 {
			return false
		}
		return true
	}
}

func isSection(k string) bool {
	return k == "feature_gates" || k == "dynamic_configs" || k == "layer_configs"
}

// inferEntity fills the entity old v1 fixtures omit.
func inferEntity(sec string, spec map[string]json.RawMessage) string {
	switch sec {
	case "feature_gates":
		return "feature_gate"
	case "layer_configs":
		return "layer"
	}
	if _, ok := spec["isActive"]; ok {
		return "experiment"
	}
	return "dynamic_config"
}

// jsString is JavaScript's String(v) for a decoded JSON value.
func jsString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return jsNumberString(numberFloat(x))
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return "null"
	}
	return string(appendJSONValue(nil, v, appendJSNumber))
}

// marshalObject writes a map of raw values with sorted keys.
func marshalObject(m map[string]json.RawMessage) ([]byte, error) {
	b := []byte{'{'}
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		v := m[k]
		if len(v) == 0 {
			v = json.RawMessage("null")
		}
		b = append(b, compactJSON(v)...)
	}
	return append(b, '}'), nil
}
