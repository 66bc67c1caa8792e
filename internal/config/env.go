package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment variable that overrides a field.
const EnvPrefix = "SIGEDGE_"

// serviceLinkVar matches the variables Kubernetes' service links define.
var serviceLinkVar = regexp.MustCompile(`_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT|PORT_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)$`)

var (
	durationType = reflect.TypeOf(time.Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
)

// EnvVar returns the environment variable that overrides the field at the YAML path, e.g.
// EnvVar("nats.stream.replicas") == "SIGEDGE_NATS_STREAM_REPLICAS".
func EnvVar(yamlPath string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(yamlPath, ".", "_"))
}

// EnvVars lists every overridable field as YAML path → variable name, sorted by path.
func EnvVars() [][2]string {
	var out [][2]string
	walkFields(reflect.TypeOf(Config{}), "", func(path string, _ []int, _ reflect.Type) {
		out = append(out, [2]string{path, EnvVar(path)})
	})
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// walkFields calls fn for every leaf field (anything but a nested struct) with its YAML path.
func walkFields(t reflect.Type, prefix string, fn func(path string, index []int, t reflect.Type)) {
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			path := tag
			if prefix != "" {
				path = prefix + "." + tag
			}
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, path, idx)
				continue
			}
			fn(path, idx, f.Type)
		}
	}
	walk(t, prefix, nil)
}

// applyEnv overrides fields of cfg from SIGEDGE_* variables in environ. An unknown SIGEDGE_
// variable is an error, so a typo does not silently leave the default in place.
func applyEnv(cfg *Config, environ []string) error {
	known := map[string]struct {
		path  string
		index []int
	}{}
	walkFields(reflect.TypeOf(*cfg), "", func(path string, index []int, _ reflect.Type) {
		known[EnvVar(path)] = struct {
			path  string
			index []int
		}{path, index}
	})
	root := reflect.ValueOf(cfg).Elem()
	var errs []error
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		f, ok := known[name]
		if !ok && serviceLinkVar.MatchString(name) {
			// Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT_8000_TCP… for every Service
			// in the namespace; a Service named sigedge-… would otherwise stop the binaries.
			continue
		}
		if !ok {
			errs = append(errs, &FieldError{Field: name, Problem: "unknown environment variable (see config.example.yaml for the fields)"})
			continue
		}
		if err := setFromString(root.FieldByIndex(f.index), value); err != nil {
			errs = append(errs, &FieldError{Field: f.path + " (from " + name + ")", Problem: err.Error()})
		}
	}
	return joinFieldErrors(errs)
}

func setFromString(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 10s, 5m)", s)
		}
		v.SetInt(int64(d))
		return nil
	case v.Type() == byteSizeType:
		b, err := ParseByteSize(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(b))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.String {
			v.Set(reflect.ValueOf(splitList(s)))
			return nil
		}
		// Lists of objects come as JSON, e.g. [{"sdk_key":"secret-a","file":"a.json"}].
		ptr := reflect.New(v.Type())
		if err := json.Unmarshal([]byte(s), ptr.Interface()); err != nil {
			return fmt.Errorf("expected a JSON list: %v", err)
		}
		v.Set(ptr.Elem())
	case reflect.Map:
		m := map[string]string{}
		for _, pair := range splitList(s) {
			k, val, ok := strings.Cut(pair, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return fmt.Errorf("expected KEY=VALUE pairs separated by commas, got %q", pair)
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		v.Set(reflect.ValueOf(m))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
