{{/* Names and labels. */}}

{{- define "sigedge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sigedge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sigedge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* sigedge.labels: every resource's labels. Call with (dict "root" $ "component" "proxy"). */}}
{{- define "sigedge.labels" -}}
helm.sh/chart: {{ include "sigedge.chart" .root }}
{{ include "sigedge.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: sigedge
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* sigedge.selectorLabels: the labels selectors use. Call with (dict "root" $ "component" "proxy"). */}}
{{- define "sigedge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sigedge.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "sigedge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sigedge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sigedge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* sigedge.durationSeconds: a Go duration string ("1m30s", "20s", "1.5h") in whole seconds, rounded
up. Fails on anything else, so the grace-period check below cannot be fooled by a typo. */}}
{{- define "sigedge.durationSeconds" -}}
{{- $s := toString .value }}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" $s) }}
{{- fail (printf "config.%s: %q is not a duration with a unit, such as 20s or 1m30s" .field $s) }}
{{- end }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" $s -1 }}
{{- $n := float64 (regexFind "^[0-9]+(\\.[0-9]+)?" .) }}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]+)?" . "" }}
{{- $mult := get (dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit }}
{{- $total = addf $total (mulf $n $mult) }}
{{- end }}
{{- ceil $total | int }}
{{- end }}

{{/* sigedge.listenPort: the port of a listen address (":8000", "0.0.0.0:8000"). Containers must
listen on every interface, or neither probes nor Services reach them. */}}
{{- define "sigedge.listenPort" -}}
{{- $addr := toString .value }}
{{- if not (regexMatch "^(|0\\.0\\.0\\.0|\\[::\\]):[0-9]+$" $addr) }}
{{- fail (printf "config.%s: %q must be \":PORT\" (all interfaces) in Kubernetes" .field $addr) }}
{{- end }}
{{- regexFind "[0-9]+$" $addr }}
{{- end }}

{{/* sigedge.natsAuthKeys: which file of natsAuth is in which key of which Secret, as YAML
{secret: NAME, keys: {credentials: KEY, ...}}; keys holds only the files that exist. */}}
{{- define "sigedge.natsAuthKeys" -}}
{{- $a := .Values.natsAuth }}
{{- $keys := dict }}
{{- $secret := "" }}
{{- if $a.existingSecret }}
{{- $secret = $a.existingSecret }}
{{- range $k, $v := $a.existingSecretKeys }}
{{- if $v }}{{ $_ := set $keys $k $v }}{{ end }}
{{- end }}
{{- else }}
{{- $secret = printf "%s-nats-auth" (include "sigedge.fullname" .) }}
{{- if $a.credentials }}{{ $_ := set $keys "credentials" "nats.creds" }}{{ end }}
{{- if $a.nkeySeed }}{{ $_ := set $keys "nkeySeed" "nkey.seed" }}{{ end }}
{{- if $a.tls.ca }}{{ $_ := set $keys "tlsCA" "ca.crt" }}{{ end }}
{{- if $a.tls.cert }}{{ $_ := set $keys "tlsCert" "tls.crt" }}{{ end }}
{{- if $a.tls.key }}{{ $_ := set $keys "tlsKey" "tls.key" }}{{ end }}
{{- end }}
{{- toYaml (dict "secret" $secret "keys" $keys) }}
{{- end }}

{{- define "sigedge.offlineSecretName" -}}
{{- .Values.offlineRuleSets.existingSecret | default (printf "%s-rulesets" (include "sigedge.fullname" .)) }}
{{- end }}

{{- define "sigedge.hasOfflineRuleSets" -}}
{{- if or .Values.offlineRuleSets.existingSecret .Values.offlineRuleSets.files }}true{{ end }}
{{- end }}

{{- define "sigedge.secretEnvName" -}}
{{- .Values.secretEnv.existingSecret | default (printf "%s-env" (include "sigedge.fullname" .)) }}
{{- end }}

{{- define "sigedge.hasSecretEnv" -}}
{{- if or .Values.secretEnv.existingSecret .Values.secretEnv.vars }}true{{ end }}
{{- end }}

{{/* sigedge.config: the configuration file as rendered into the ConfigMap: .Values.config with what
the chart sets itself (see values.yaml). Templates that need a setting read it back with fromYaml. */}}
{{- define "sigedge.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $nats := $cfg.nats }}
{{- $_ := set $nats "embedded" (.Values.embeddedNats.enabled | default false) }}
{{- if .Values.embeddedNats.enabled }}
{{- $_ := set $nats "host" "0.0.0.0" }}
{{- $_ := set $nats.stream "replicas" 1 }}
{{- if not (hasPrefix "/" (toString $nats.data_dir)) }}
{{- fail (printf "config.nats.data_dir must be an absolute path (the chart mounts the JetStream volume there), got %q" (toString $nats.data_dir)) }}
{{- end }}
{{- else if not $nats.urls }}
{{- fail "config.nats.urls must list the region's NATS servers (or set embeddedNats.enabled=true for a single-replica trial)" }}
{{- end }}
{{- $auth := fromYaml (include "sigedge.natsAuthKeys" .) }}
{{- $dir := printf "%s/nats" .Values.mountPath }}
{{- range $kind, $field := dict "credentials" "credentials_file" "nkeySeed" "nkey_file" }}
{{- with get $auth.keys $kind }}{{ $_ := set $nats $field (printf "%s/%s" $dir .) }}{{ end }}
{{- end }}
{{- range $kind, $field := dict "tlsCA" "ca_file" "tlsCert" "cert_file" "tlsKey" "key_file" }}
{{- with get $auth.keys $kind }}{{ $_ := set $nats.tls $field (printf "%s/%s" $dir .) }}{{ end }}
{{- end }}
{{- $offline := list }}
{{- range $i, $entry := ($cfg.rulesets.offline | default list) }}
{{- $o := deepCopy $entry }}
{{- $file := toString $o.file }}
{{- if and $file (not (hasPrefix "/" $file)) }}
{{- if and (not $.Values.offlineRuleSets.existingSecret) (not (hasKey $.Values.offlineRuleSets.files $file)) }}
{{- fail (printf "config.rulesets.offline[%d].file: %q is not a key of offlineRuleSets.files" $i $file) }}
{{- end }}
{{- $_ := set $o "file" (printf "%s/rulesets/%s" $.Values.mountPath $file) }}
{{- end }}
{{- $offline = append $offline $o }}
{{- end }}
{{- $_ := set $cfg.rulesets "offline" $offline }}
{{- toYaml $cfg }}
{{- end }}

{{/* sigedge.goMemLimit: GOMEMLIMIT at 90% of a memory limit written in Mi or Gi, so the Go GC works
harder before the kernel kills the container; empty for other forms. */}}
{{- define "sigedge.goMemLimit" -}}
{{- $m := toString (dig "limits" "memory" "" .) }}
{{- if regexMatch "^[0-9]+Mi$" $m }}
{{- printf "%dMiB" (div (mul (trimSuffix "Mi" $m | int) 9) 10) }}
{{- else if regexMatch "^[0-9]+Gi$" $m }}
{{- printf "%dMiB" (div (mul (trimSuffix "Gi" $m | int) 1024 9) 10) }}
{{- end }}
{{- end }}

{{/* sigedge.topologySpread: the constraints of a component, each with the component's labelSelector
unless it has one. Call with (dict "root" $ "component" "proxy" "constraints" LIST). */}}
{{- define "sigedge.topologySpread" -}}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not $c.labelSelector }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (fromYaml (include "sigedge.selectorLabels" (dict "root" $.root "component" $.component)))) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* sigedge.checkGrace: fails unless a grace period covers the drain it must allow. */}}
{{- define "sigedge.checkGrace" -}}
{{- $shutdown := include "sigedge.durationSeconds" (dict "field" .field "value" .shutdown) | int }}
{{- $need := add $shutdown .preStop 5 }}
{{- if lt (int .grace) (int $need) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be at least config.%s (%ds) + %d s preStop + 5 s, i.e. %d, or Kubernetes kills the process mid-drain" .component (int .grace) .field $shutdown (int .preStop) $need) }}
{{- end }}
{{- end }}

{{/* sigedge.podCommon: the pod-spec fields both workloads share. */}}
{{- define "sigedge.podCommon" -}}
serviceAccountName: {{ include "sigedge.serviceAccountName" . }}
automountServiceAccountToken: false
{{- /* Service links would put SIGEDGE_*_SERVICE_HOST and the like into the environment of a release
named sigedge, and the binaries refuse unknown SIGEDGE_ variables. */}}
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* sigedge.volumes: the volumes both workloads mount (configuration, /tmp, NATS files, rule sets). */}}
{{- define "sigedge.volumes" -}}
{{- $auth := fromYaml (include "sigedge.natsAuthKeys" .) }}
- name: config
  configMap:
    name: {{ include "sigedge.fullname" . }}-config
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if $auth.keys }}
- name: nats-auth
  secret:
    secretName: {{ $auth.secret }}
    defaultMode: 0440
    items:
      {{- range $kind, $key := $auth.keys }}
      - key: {{ $key }}
        path: {{ $key }}
      {{- end }}
{{- end }}
{{- if include "sigedge.hasOfflineRuleSets" . }}
- name: rulesets
  secret:
    secretName: {{ include "sigedge.offlineSecretName" . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "sigedge.volumeMounts" -}}
{{- $auth := fromYaml (include "sigedge.natsAuthKeys" .) }}
- name: config
  mountPath: {{ .Values.mountPath }}/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if $auth.keys }}
- name: nats-auth
  mountPath: {{ .Values.mountPath }}/nats
  readOnly: true
{{- end }}
{{- if include "sigedge.hasOfflineRuleSets" . }}
- name: rulesets
  mountPath: {{ .Values.mountPath }}/rulesets
  readOnly: true
{{- end }}
{{- end }}

{{/* sigedge.env: environment of a container. Call with (dict "root" $ "component" VALUES "extra" LIST). */}}
{{- define "sigedge.env" -}}
{{- with include "sigedge.goMemLimit" .component.resources }}
- name: GOMEMLIMIT
  value: {{ . | quote }}
{{- /* GOGC above 100 only where GOMEMLIMIT bounds the heap (the proxy's gcPercent). */}}
{{- if not (kindIs "invalid" $.component.gcPercent) }}
- name: GOGC
  value: {{ int $.component.gcPercent | quote }}
{{- end }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- with .component.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sigedge.envFrom" -}}
{{- if include "sigedge.hasSecretEnv" . }}
envFrom:
  - secretRef:
      name: {{ include "sigedge.secretEnvName" . }}
{{- end }}
{{- end }}

{{/* sigedge.checksums: pod annotations that change when the configuration or a chart-made Secret does,
so that pods roll. */}}
{{- define "sigedge.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secrets: {{ include (print .Template.BasePath "/secrets.yaml") . | sha256sum }}
{{- end }}

{{/* sigedge.metricsAnnotations: Prometheus' conventional scrape annotations. Call with (dict "root" $ "port" PORT). */}}
{{- define "sigedge.metricsAnnotations" -}}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* sigedge.probes: startup, liveness and readiness probes on the admin port. Takes a dict:
probes (the timings) and exclude (readiness checks left out, /readyz?exclude=name). */}}
{{- define "sigedge.probes" -}}
{{- $path := "/readyz" -}}
{{- range $i, $name := .exclude -}}
{{- $path = printf "%s%sexclude=%s" $path (ternary "?" "&" (eq $i 0)) ($name | urlquery) -}}
{{- end -}}
startupProbe:
  httpGet:
    path: /healthz
    port: admin
  {{- toYaml .probes.startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  {{- toYaml .probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: {{ $path }}
    port: admin
  {{- toYaml .probes.readiness | nindent 2 }}
{{- end }}
