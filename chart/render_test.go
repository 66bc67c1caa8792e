package chart

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The subset of Kubernetes objects the tests look at. Strict checking of every field against the
// real API types is kubecheck's job (testdata/kubecheck); these structs only read.

type meta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type object struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   meta              `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	node       *yaml.Node
}

type workload struct {
	Spec struct {
		Replicas    *int          `yaml:"replicas"`
		Selector    labelSelector `yaml:"selector"`
		ServiceName string        `yaml:"serviceName"`
		Strategy    struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Template struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata meta `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type podSpec struct {
	EnableServiceLinks            *bool   `yaml:"enableServiceLinks"`
	AutomountServiceAccountToken  *bool   `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int    `yaml:"terminationGracePeriodSeconds"`
	ServiceAccountName            string  `yaml:"serviceAccountName"`
	SecurityContext               secCtx  `yaml:"securityContext"`
	Containers                    []ctr   `yaml:"containers"`
	InitContainers                []ctr   `yaml:"initContainers"`
	Volumes                       []vol   `yaml:"volumes"`
	TopologySpreadConstraints     []tsc   `yaml:"topologySpreadConstraints"`
	Affinity                      yamlAny `yaml:"affinity"`
}

type yamlAny = map[string]any

type tsc struct {
	TopologyKey       string        `yaml:"topologyKey"`
	WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
	LabelSelector     labelSelector `yaml:"labelSelector"`
}

type secCtx struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	Privileged               *bool  `yaml:"privileged"`
	Capabilities             struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
	SeccompProfile struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type ctr struct {
	Name    string          `yaml:"name"`
	Image   string          `yaml:"image"`
	Command []string        `yaml:"command"`
	Args    []string        `yaml:"args"`
	Ports   []containerPort `yaml:"ports"`
	Env     []envVar        `yaml:"env"`
	EnvFrom []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext secCtx `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type servicePort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort string `yaml:"targetPort"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
		ConfigMapKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"configMapKeyRef"`
	} `yaml:"valueFrom"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type vol struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string      `yaml:"name"`
		Items []keyToPath `yaml:"items"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string      `yaml:"secretName"`
		Items      []keyToPath `yaml:"items"`
	} `yaml:"secret"`
	EmptyDir *struct {
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
}

type service struct {
	Spec struct {
		Type                     string            `yaml:"type"`
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []servicePort     `yaml:"ports"`
	} `yaml:"spec"`
}

type hpa struct {
	Spec struct {
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas int `yaml:"minReplicas"`
		MaxReplicas int `yaml:"maxReplicas"`
		Metrics     []struct {
			Type     string `yaml:"type"`
			Resource struct {
				Name   string `yaml:"name"`
				Target struct {
					Type               string `yaml:"type"`
					AverageUtilization int    `yaml:"averageUtilization"`
				} `yaml:"target"`
			} `yaml:"resource"`
		} `yaml:"metrics"`
	} `yaml:"spec"`
}

type pdb struct {
	Spec struct {
		MinAvailable   string        `yaml:"minAvailable"`
		MaxUnavailable string        `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type ingress struct {
	Spec struct {
		Rules []struct {
			Host string `yaml:"host"`
			HTTP struct {
				Paths []struct {
					Backend struct {
						Service struct {
							Name string `yaml:"name"`
							Port struct {
								Name   string `yaml:"name"`
								Number int    `yaml:"number"`
							} `yaml:"port"`
						} `yaml:"service"`
					} `yaml:"backend"`
				} `yaml:"paths"`
			} `yaml:"http"`
		} `yaml:"rules"`
	} `yaml:"spec"`
}

type serviceMonitor struct {
	Spec struct {
		Selector          labelSelector `yaml:"selector"`
		NamespaceSelector struct {
			MatchNames []string `yaml:"matchNames"`
		} `yaml:"namespaceSelector"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

type networkPolicy struct {
	Spec struct {
		PodSelector labelSelector `yaml:"podSelector"`
		PolicyTypes []string      `yaml:"policyTypes"`
		Ingress     []struct {
			From []struct {
				PodSelector *labelSelector `yaml:"podSelector"`
			} `yaml:"from"`
			Ports []struct {
				Port string `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	} `yaml:"spec"`
}

// release is one rendering of the chart.
type release struct {
	name, namespace string
	manifest        []byte
	objects         []object
}

// render runs helm template with args (values files, --set …) and parses the output.
func render(t *testing.T, args ...string) *release {
	t.Helper()
	r, err := tryRender(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const (
	testRelease   = "sigedge" // as named by most users: its Services are then SIGEDGE_* service links
	testNamespace = "edge"
	kubeVersion   = "1.31.0"
)

func tryRender(t *testing.T, args ...string) (*release, error) {
	t.Helper()
	return tryRenderChart(t, ".", args...)
}

// tryRenderChart renders the chart in dir (a copy of this one, for tests that add templates).
func tryRenderChart(t *testing.T, dir string, args ...string) (*release, error) {
	t.Helper()
	helm, _ := requireTools(t)
	full := append([]string{"template", testRelease, dir, "--namespace", testNamespace, "--kube-version", kubeVersion}, args...)
	out, err := runHelm(t, helm, full...)
	if err != nil {
		return nil, err
	}
	r := &release{name: testRelease, namespace: testNamespace, manifest: out}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("helm output is not YAML: %v", err)
		}
		var o object
		if err := n.Decode(&o); err != nil {
			return nil, fmt.Errorf("decoding an object: %v", err)
		}
		if o.Kind == "" {
			continue
		}
		o.node = &n
		r.objects = append(r.objects, o)
	}
	return r, nil
}

func runHelm(t *testing.T, helm string, args ...string) ([]byte, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helm, args...)
	// Keep helm away from the user's repositories, plugins and clusters.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"), "KUBECONFIG="+filepath.Join(home, "kubeconfig"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stderr.String(), lastLines(stdout.String(), 20))
	}
	return stdout.Bytes(), nil
}

// all returns the objects of a kind.
func (r *release) all(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// find returns the object of a kind and name, or nil.
func (r *release) find(kind, name string) *object {
	for i, o := range r.objects {
		if o.Kind == kind && o.Metadata.Name == name {
			return &r.objects[i]
		}
	}
	return nil
}

// decode reads the object into v, failing the test on error.
func (o *object) decode(t *testing.T, v any) {
	t.Helper()
	if err := o.node.Decode(v); err != nil {
		t.Fatalf("%s %s: %v", o.Kind, o.Metadata.Name, err)
	}
}

// secretData is a Secret's data (base64-decoded) merged with its stringData.
func (o *object) secretData() (map[string]string, error) {
	out := map[string]string{}
	for k, v := range o.Data {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("Secret %s key %s: %v", o.Metadata.Name, k, err)
		}
		out[k] = string(b)
	}
	for k, v := range o.StringData {
		out[k] = v
	}
	return out, nil
}

// workloads returns the Deployments and StatefulSets by component label.
func (r *release) workloads(t *testing.T) map[string]*workloadObj {
	t.Helper()
	out := map[string]*workloadObj{}
	for i, o := range r.objects {
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" {
			continue
		}
		w := &workloadObj{obj: &r.objects[i]}
		o.decode(t, &w.workload)
		c := o.Metadata.Labels["app.kubernetes.io/component"]
		if out[c] != nil {
			t.Fatalf("two workloads for component %q", c)
		}
		out[c] = w
	}
	return out
}

type workloadObj struct {
	obj *object
	workload
}

func (w *workloadObj) pod() *podSpec { return &w.Spec.Template.Spec }

// selects reports whether a selector selects a set of labels (an empty selector selects nothing here:
// none of the chart's should be empty).
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
