package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sigedge/sigedge/internal/config"
)

// cluster stands in for what a real cluster adds to a release: Secrets created outside the chart
// (existingSecret values), by name, as key → contents.
type cluster map[string]map[string]string

// materialize does what the kubelet does for one container, under root: it writes the files of every
// ConfigMap and Secret volume the container mounts below root (the test renders with mountPath inside
// root), and returns the container's environment as the process would see it, service links
// included when the pod does not turn them off. A mounted key that no ConfigMap or Secret provides is
// an error, as it is for the kubelet.
func (r *release) materialize(p *podSpec, c *ctr, root string, cl cluster) (environ []string, err error) {
	lookupSecret := func(name string) (map[string]string, error) {
		if o := r.find("Secret", name); o != nil {
			return o.secretData()
		}
		if d, ok := cl[name]; ok {
			return d, nil
		}
		return nil, fmt.Errorf("Secret %q is neither rendered by the chart nor provided by the cluster", name)
	}
	for _, m := range c.VolumeMounts {
		if !strings.HasPrefix(m.MountPath, root+string(os.PathSeparator)) {
			continue // /tmp, the JetStream directory: not files the configuration names
		}
		if m.SubPath != "" {
			return nil, fmt.Errorf("mount %s: subPath is not supported by this test", m.Name)
		}
		var v *vol
		for i := range p.Volumes {
			if p.Volumes[i].Name == m.Name {
				v = &p.Volumes[i]
			}
		}
		if v == nil {
			return nil, fmt.Errorf("container %s mounts %q, which the pod does not have", c.Name, m.Name)
		}
		var data map[string]string
		var items []keyToPath
		switch {
		case v.ConfigMap != nil:
			o := r.find("ConfigMap", v.ConfigMap.Name)
			if o == nil {
				return nil, fmt.Errorf("volume %s: ConfigMap %q is not rendered", v.Name, v.ConfigMap.Name)
			}
			data, items = o.Data, v.ConfigMap.Items
		case v.Secret != nil:
			if data, err = lookupSecret(v.Secret.SecretName); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			items = v.Secret.Items
		default:
			return nil, fmt.Errorf("volume %s mounted at %s is neither a ConfigMap nor a Secret", v.Name, m.MountPath)
		}
		if items == nil {
			for k := range data {
				items = append(items, keyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			content, ok := data[it.Key]
			if !ok {
				return nil, fmt.Errorf("volume %s: key %q is not in its ConfigMap or Secret", v.Name, it.Key)
			}
			dst := filepath.Join(m.MountPath, it.Path)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(dst, []byte(content), 0o600); err != nil {
				return nil, err
			}
		}
	}

	// The kubelet's order: service links, then envFrom, then env (later entries win, as they do in
	// config.Load).
	if p.EnableServiceLinks == nil || *p.EnableServiceLinks {
		environ = append(environ, r.serviceLinks()...)
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.SecretRef != nil:
			d, err := lookupSecret(ef.SecretRef.Name)
			if err != nil {
				return nil, fmt.Errorf("envFrom: %w", err)
			}
			keys := make([]string, 0, len(d))
			for k := range d {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				environ = append(environ, k+"="+d[k])
			}
		case ef.ConfigMapRef != nil:
			o := r.find("ConfigMap", ef.ConfigMapRef.Name)
			if o == nil {
				return nil, fmt.Errorf("envFrom: ConfigMap %q is not rendered", ef.ConfigMapRef.Name)
			}
			for k, v := range o.Data {
				environ = append(environ, k+"="+v)
			}
		}
	}
	for _, e := range c.Env {
		val := e.Value
		if e.ValueFrom != nil {
			switch {
			case e.ValueFrom.SecretKeyRef != nil:
				d, err := lookupSecret(e.ValueFrom.SecretKeyRef.Name)
				if err != nil {
					return nil, fmt.Errorf("env %s: %w", e.Name, err)
				}
				var ok bool
				if val, ok = d[e.ValueFrom.SecretKeyRef.Key]; !ok {
					return nil, fmt.Errorf("env %s: Secret has no key %q", e.Name, e.ValueFrom.SecretKeyRef.Key)
				}
			default:
				continue // field and resource references carry no SIGEDGE_ settings
			}
		}
		environ = append(environ, e.Name+"="+val)
	}
	return environ, nil
}

// serviceLinks are the variables Kubernetes gives a pod for every Service of its namespace that has
// a cluster IP, unless enableServiceLinks is false (docker-style links: NAME_SERVICE_HOST, …).
func (r *release) serviceLinks() []string {
	var out []string
	for _, o := range r.all("Service") {
		var s service
		if err := o.node.Decode(&s); err != nil || s.Spec.ClusterIP == "None" {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(o.Metadata.Name, "-", "_"))
		out = append(out, name+"_SERVICE_HOST=10.0.0.1")
		for i, p := range s.Spec.Ports {
			port := strconv.Itoa(p.Port)
			if i == 0 {
				out = append(out, name+"_SERVICE_PORT="+port, name+"_PORT=tcp://10.0.0.1:"+port)
			}
			if p.Name != "" {
				out = append(out, name+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))+"="+port)
			}
			pfx := name + "_PORT_" + port + "_TCP"
			out = append(out, pfx+"=tcp://10.0.0.1:"+port, pfx+"_PROTO=tcp", pfx+"_PORT="+port, pfx+"_ADDR=10.0.0.1")
		}
	}
	return out
}

// loadContainerConfig materializes a container's files and environment under root and loads its
// configuration with sigedge's own loader, as the binary does at start-up.
func (r *release) loadContainerConfig(p *podSpec, c *ctr, root string, cl cluster) (config.Config, error) {
	// Each container gets a fresh root, so one container's mounts cannot satisfy another's files.
	if err := os.RemoveAll(root); err != nil {
		return config.Config{}, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return config.Config{}, err
	}
	environ, err := r.materialize(p, c, root, cl)
	if err != nil {
		return config.Config{}, err
	}
	path := ""
	for i, a := range c.Args {
		if (a == "-config" || a == "--config") && i+1 < len(c.Args) {
			path = c.Args[i+1]
		} else if v, ok := strings.CutPrefix(a, "-config="); ok {
			path = v
		}
	}
	if path == "" {
		return config.Config{}, fmt.Errorf("container %s has no -config argument (args %q)", c.Name, c.Args)
	}
	if !strings.HasPrefix(path, root) {
		return config.Config{}, fmt.Errorf("container %s reads its configuration from %s, outside the chart's mounts", c.Name, path)
	}
	return config.Load(path, environ)
}
