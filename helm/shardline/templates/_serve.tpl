{{/*
The spec that is deployed: values.spec, checked for what only the chart needs,
plus the placement resources that tie router replicas to router pods and each
model's replicas to its own worker group, and `router.auth.tokens_file` pointing
at the mounted auth Secret when there is one. Returned as JSON (templates return text).
*/}}
{{- define "shardline.spec" -}}
{{- $spec := deepCopy .Values.spec -}}
{{- $router := deepCopy (default (dict) $spec.router) -}}
{{- if and (hasKey $router "port") (eq (int $router.port) 0) -}}
{{- fail "spec.router.port is 0; the chart needs a fixed port for the router Service and probes" -}}
{{- end -}}
{{- $routerCustom := deepCopy (default (dict) $router.custom) -}}
{{- $_ := set $routerCustom .Values.router.placementResource 1 -}}
{{- $_ := set $router "custom" $routerCustom -}}
{{- if .Values.auth.existingSecret -}}
{{- $auth := deepCopy (default (dict) $router.auth) -}}
{{- $_ := set $auth "tokens_file" (printf "/etc/shardline/auth/%s" .Values.auth.key) -}}
{{- $_ := set $router "auth" $auth -}}
{{- end -}}
{{- $_ := set $spec "router" $router -}}
{{- $models := list -}}
{{- range $i, $m := $spec.models -}}
{{- if not (hasPrefix "/" $m.path) -}}
{{- fail (printf "spec.models[%d].path is %q; in the chart model paths must be absolute (inside the image or under modelVolume.mountPath %s)" $i $m.path $.Values.modelVolume.mountPath) -}}
{{- end -}}
{{- $resources := deepCopy (default (dict) $m.resources) -}}
{{- $custom := deepCopy (default (dict) $resources.custom) -}}
{{- $_ := set $custom (include "shardline.modelResource" $m.name) 1 -}}
{{- $_ := set $resources "custom" $custom -}}
{{- $models = append $models (merge (dict "resources" $resources) $m) -}}
{{- end -}}
{{- $_ := set $spec "models" $models -}}
{{- toJson $spec -}}
{{- end -}}

{{/* Ray Serve config (ServeDeploySchema): the same one `shardline render serve-config` writes. */}}
{{- define "shardline.serveConfig" -}}
{{- $spec := include "shardline.spec" . | fromJson -}}
{{- $app := dict "name" (default "shardline" $spec.name) "route_prefix" nil "import_path" "shardline.serve.serve_config:app_builder" "args" (dict "spec" $spec) -}}
{{- toYaml (dict "proxy_location" "Disabled" "applications" (list $app)) -}}
{{- end -}}

{{/* Per model: Ray logical CPUs and GPUs one replica needs (replica process + TP x PP workers). */}}
{{- define "shardline.modelShape" -}}
{{- $p := default (dict) .parallelism -}}
{{- $r := default (dict) .resources -}}
{{- $workers := mul (int (default 1 $p.tensor)) (int (default 1 $p.pipeline)) -}}
{{- $cpus := ceil (addf 1 (mulf $workers (default 1 $r.cpu))) | int -}}
{{- $gpus := ceil (mulf $workers (default 0 $r.gpu)) | int -}}
{{- toJson (dict "workers" $workers "cpus" $cpus "gpus" $gpus) -}}
{{- end -}}
