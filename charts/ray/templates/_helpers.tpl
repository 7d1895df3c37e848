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

{{/* A podType's quantity: the later spelling (CPU, GPU) wins over the earlier one (numCPU, numGPU). */}}
{{- define "ray.quantity" -}}
{{- $podType := index . 0 -}}{{- $key := index . 1 -}}{{- $legacy := index . 2 -}}{{- $default := index . 3 -}}
{{- if hasKey $podType $key -}}{{ index $podType $key }}{{- else if hasKey $podType $legacy -}}{{ index $podType $legacy }}{{- else -}}{{ $default }}{{- end -}}
{{- end }}
