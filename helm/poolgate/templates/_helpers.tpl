{{/* Name prefix of everything the release creates. */}}
{{- define "poolgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of the hooks Deployment, Service, ServiceAccount and settings ConfigMap. */}}
{{- define "poolgate.hooks.name" -}}
{{- printf "%s-hooks" (include "poolgate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "poolgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "poolgate.labels" -}}
app.kubernetes.io/name: poolgate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "poolgate.hooks.selector" -}}
app.kubernetes.io/name: poolgate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: hooks
{{- end -}}

{{/* The chart's DecoratorController files (from the repository's metacontroller/), as a JSON list: the Envoy
     Gateway ones (metacontroller/envoy-gateway/) only with envoyGateway.enabled. */}}
{{- define "poolgate.controllerFiles" -}}
{{- $paths := list }}
{{- range $path, $_ := .Files.Glob "files/metacontroller/*.yaml" }}
{{- $paths = append $paths $path }}
{{- end }}
{{- if .Values.envoyGateway.enabled }}
{{- range $path, $_ := .Files.Glob "files/metacontroller/envoy-gateway/*.yaml" }}
{{- $paths = append $paths $path }}
{{- end }}
{{- end }}
{{- toJson $paths }}
{{- end -}}

{{/* The hooks' settings file (hooks/settings.py reads it; unknown keys are refused). */}}
{{- define "poolgate.hooks.settings" -}}
{{- toYaml (dict
  "poolgateImage" (include "poolgate.image" .)
  "envoyImage" (printf "%s:%s" .Values.envoy.image.repository .Values.envoy.image.tag)
  "imagePullPolicy" .Values.image.pullPolicy
  "envoyReplicas" (.Values.envoy.replicas | int)
  "envoyLogLevel" .Values.envoy.logLevel
  "gatewayServiceType" .Values.envoy.serviceType
  "envoyResources" .Values.envoy.resources
  "modelRouterResources" .Values.envoy.modelRouterResources
  "pickerProfile" .Values.picker.profile
  "pickerReplicas" (.Values.picker.replicas | int)
  "pickerResources" .Values.picker.resources
  "clusterDomain" .Values.clusterDomain
  "referenceGrantVersion" .Values.gatewayAPI.referenceGrantVersion
  "envoyGatewayControllerName" .Values.envoyGateway.controllerName
  "envoyGatewayAtUserGateway" .Values.envoyGateway.atUserGateway) -}}
{{- end -}}

{{/* Annotations of the pre-delete hook objects: created before the uninstall Job (lower weight), removed with it. */}}
{{- define "poolgate.uninstallHook" -}}
helm.sh/hook: pre-delete
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}
