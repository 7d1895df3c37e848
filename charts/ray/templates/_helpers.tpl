{{/* Standard labels of every object of the release. */}}
{{- define "ray.labels" -}}
app.kubernetes.io/name: ray
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Name of the operator's objects. */}}
{{- define "ray.operatorName" -}}
{{ .Release.Name }}-ray-operator
{{- end }}

{{/* A podType's quantity: the later spelling (CPU, GPU) wins over the earlier one (numCPU, numGPU). A fraction
is quoted: a quantity is an integer or a string (0.5 becomes "0.5", as a Pod takes it). */}}
{{- define "ray.quantity" -}}
{{- $podType := index . 0 -}}{{- $key := index . 1 -}}{{- $legacy := index . 2 -}}{{- $default := index . 3 -}}
{{- $value := $default -}}
{{- if hasKey $podType $key -}}{{- $value = index $podType $key -}}{{- else if hasKey $podType $legacy -}}{{- $value = index $podType $legacy -}}{{- end -}}
{{- if contains "." (toString $value) -}}{{ toString $value | quote }}{{- else -}}{{ $value }}{{- end -}}
{{- end }}

{{/* The operator's namespace: the release's (always for a namespaced operator); operatorNamespace overrides it for a
cluster-scoped one. */}}
{{- define "ray.operatorNamespace" -}}
{{- if .Values.namespacedOperator -}}{{ .Release.Namespace }}{{- else -}}{{ .Values.operatorNamespace | default .Release.Namespace }}{{- end -}}
{{- end }}
