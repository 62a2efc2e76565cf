{{/*
The chart name, or nameOverride.
*/}}
{{- define "twilio-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, or the release name followed by the
chart name unless the release name already contains it. Truncated to 63 characters, the limit of
a DNS label.
*/}}
{{- define "twilio-operator.fullname" -}}
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

{{/*
The chart label: name-version.
*/}}
{{- define "twilio-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource of the release.
*/}}
{{- define "twilio-operator.labels" -}}
helm.sh/chart: {{ include "twilio-operator.chart" . }}
{{ include "twilio-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the operator Pods. They never change between releases, since a Deployment's
selector is immutable.
*/}}
{{- define "twilio-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "twilio-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "twilio-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "twilio-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository@digest when a digest is given, else repository:tag.
*/}}
{{- define "twilio-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
"true" when the operator runs with --leader-elect: asked for, or needed because more than one
replica runs.
*/}}
{{- define "twilio-operator.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
The watched namespaces, without duplicates, in the order given.
*/}}
{{- define "twilio-operator.watchNamespaces" -}}
{{- .Values.watchNamespaces | uniq | join "," }}
{{- end }}

{{/*
The API version of PodDisruptionBudget: policy/v1 where the cluster serves it (1.21 and later),
policy/v1beta1 on 1.20.
*/}}
{{- define "twilio-operator.pdbApiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1" }}policy/v1{{ else }}policy/v1beta1{{ end }}
{{- end }}

{{/*
The imagePullSecrets of every Pod the chart makes: global.imagePullSecrets (names or {name: ...}
objects, as parent charts share them), then imagePullSecrets, without duplicates. Empty when
neither names one.
*/}}
{{- define "twilio-operator.imagePullSecrets" -}}
{{- $names := list }}
{{- $global := (.Values.global).imagePullSecrets | default list }}
{{- range concat $global (.Values.imagePullSecrets | default list) }}
{{- $name := . }}
{{- if kindIs "map" . }}{{ $name = .name }}{{ end }}
{{- if and $name (not (has $name $names)) }}{{ $names = append $names $name }}{{ end }}
{{- end }}
{{- if $names }}
imagePullSecrets:
{{- range $names }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels of the `helm test` Pod. They leave out app.kubernetes.io/name, so that the Pod matches
neither the Deployment's selector (whose ReplicaSet would adopt it), the Service's nor the
PodDisruptionBudget's.
*/}}
{{- define "twilio-operator.testLabels" -}}
helm.sh/chart: {{ include "twilio-operator.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: {{ include "twilio-operator.name" . }}
app.kubernetes.io/component: helm-test
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

