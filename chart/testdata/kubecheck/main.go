// Command kubecheck reads rendered Kubernetes manifests (multi-document YAML) on standard input and
// decodes each object strictly into its Kubernetes API type, so a misspelt or misplaced field fails
// here instead of being dropped silently by the API server. It also checks names, labels and port
// names as the API server would. It is built by the chart's tests, in its own module so that the
// Kubernetes API packages never become dependencies of sigedge.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// unchecked are kinds whose Go types are not in k8s.io/api (CRDs); they are only parsed.
var unchecked = map[string]bool{"monitoring.coreos.com/v1/ServiceMonitor": true}

func newObject(gvk string) (any, bool) {
	switch gvk {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}, true
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	}
	return nil, false
}

func main() {
	n, err := check(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if n == 0 {
		fmt.Fprintln(os.Stderr, "kubecheck: no objects on standard input")
		os.Exit(1)
	}
}

func check(r io.Reader, w io.Writer) (int, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var errs []error
	n := 0
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("reading YAML: %w", err)
		}
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", n+1, err))
			continue
		}
		if head.Kind == "" {
			continue // an empty document (a template that rendered nothing)
		}
		n++
		gvk := head.APIVersion + "/" + head.Kind
		id := gvk + " " + head.Metadata.Name
		obj, ok := newObject(gvk)
		switch {
		case ok:
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", id, err))
				continue
			}
			errs = append(errs, prefix(id, semantic(obj))...)
		case unchecked[gvk]:
			fmt.Fprintf(w, "not checked (no API type): %s\n", id)
		default:
			errs = append(errs, fmt.Errorf("%s: unknown kind (add it to kubecheck)", id))
			continue
		}
		errs = append(errs, prefix(id, meta(head.Kind, head.Metadata))...)
		fmt.Fprintf(w, "ok: %s\n", id)
	}
	return n, errors.Join(errs...)
}

func prefix(id string, errs []error) []error {
	for i, err := range errs {
		errs[i] = fmt.Errorf("%s: %w", id, err)
	}
	return errs
}

// meta checks the name and labels as the API server does.
func meta(kind string, m metav1.ObjectMeta) []error {
	var errs []error
	bad := func(what string, problems []string) {
		if len(problems) > 0 {
			errs = append(errs, fmt.Errorf("%s: %s", what, strings.Join(problems, "; ")))
		}
	}
	if kind == "Service" {
		bad("metadata.name", validation.IsDNS1035Label(m.Name))
	} else {
		bad("metadata.name", validation.IsDNS1123Subdomain(m.Name))
	}
	bad("metadata.labels", labels(m.Labels))
	for k := range m.Annotations {
		bad("metadata.annotations key "+k, validation.IsQualifiedName(strings.ToLower(k)))
	}
	return errs
}

func labels(l map[string]string) []string {
	var out []string
	for k, v := range l {
		out = append(out, validation.IsQualifiedName(k)...)
		out = append(out, validation.IsValidLabelValue(v)...)
	}
	return out
}

// semantic checks what strict decoding cannot: pod templates' names, ports and selectors.
func semantic(obj any) []error {
	var errs []error
	pod := func(sel *metav1.LabelSelector, t corev1.PodTemplateSpec) {
		if sel == nil {
			errs = append(errs, errors.New("spec.selector is required"))
		} else {
			for k, v := range sel.MatchLabels {
				if t.Labels[k] != v {
					errs = append(errs, fmt.Errorf("spec.selector %s=%s does not match the pod template's labels", k, v))
				}
			}
		}
		if p := labels(t.Labels); len(p) > 0 {
			errs = append(errs, fmt.Errorf("pod labels: %s", strings.Join(p, "; ")))
		}
		errs = append(errs, podSpec(t.Spec)...)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		pod(o.Spec.Selector, o.Spec.Template)
	case *appsv1.StatefulSet:
		pod(o.Spec.Selector, o.Spec.Template)
		if o.Spec.ServiceName == "" {
			errs = append(errs, errors.New("spec.serviceName is required"))
		}
	case *corev1.Service:
		for _, p := range o.Spec.Ports {
			if p.Port < 1 || p.Port > 65535 {
				errs = append(errs, fmt.Errorf("port %s: %d out of range", p.Name, p.Port))
			}
		}
	}
	return errs
}

func podSpec(s corev1.PodSpec) []error {
	var errs []error
	volumes := map[string]bool{}
	for _, v := range s.Volumes {
		if p := validation.IsDNS1123Label(v.Name); len(p) > 0 {
			errs = append(errs, fmt.Errorf("volume %q: %s", v.Name, strings.Join(p, "; ")))
		}
		if volumes[v.Name] {
			errs = append(errs, fmt.Errorf("volume %q is listed twice", v.Name))
		}
		volumes[v.Name] = true
	}
	if len(s.Containers) == 0 {
		errs = append(errs, errors.New("no containers"))
	}
	for _, c := range s.Containers {
		ports := map[string]bool{}
		for _, p := range c.Ports {
			if p.Name != "" {
				if pr := validation.IsValidPortName(p.Name); len(pr) > 0 {
					errs = append(errs, fmt.Errorf("container %s port %q: %s", c.Name, p.Name, strings.Join(pr, "; ")))
				}
				ports[p.Name] = true
			}
			if p.ContainerPort < 1 || p.ContainerPort > 65535 {
				errs = append(errs, fmt.Errorf("container %s port %q: %d out of range", c.Name, p.Name, p.ContainerPort))
			}
		}
		for _, probe := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
			if probe != nil && probe.HTTPGet != nil && probe.HTTPGet.Port.StrVal != "" && !ports[probe.HTTPGet.Port.StrVal] {
				errs = append(errs, fmt.Errorf("container %s: a probe uses port %q, which the container does not name", c.Name, probe.HTTPGet.Port.StrVal))
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] && m.Name != "nats-data" { // nats-data may come from volumeClaimTemplates
				errs = append(errs, fmt.Errorf("container %s mounts volume %q, which the pod does not have", c.Name, m.Name))
			}
		}
		for _, e := range c.Env {
			if p := validation.IsEnvVarName(e.Name); len(p) > 0 {
				errs = append(errs, fmt.Errorf("container %s env %q: %s", c.Name, e.Name, strings.Join(p, "; ")))
			}
		}
	}
	return errs
}
