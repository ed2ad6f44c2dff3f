// Validates Kubernetes manifests offline and strictly: every document against the JSON schema of
// its apiVersion/kind (built-in kinds from the Kubernetes 1.34 API models, custom resources from
// the upstream CRDs' openAPIV3Schema, kustomization.yaml from a local schema), with unknown fields,
// wrong types, missing required fields and unknown kinds all errors. Also: YAML parse errors and
// duplicate keys, images without a pinned tag, two objects of one kind/namespace/name, and a
// kustomization.yaml whose resources are missing or that leaves a manifest beside it unlisted.
//
// usage: node validate.mjs --models-schema K8S.json --crd-dir DIR [--exclude DIR]... PATH...
//        node validate.mjs --models-schema K8S.json --crd-dir DIR --selftest DIR
// Packages (ajv, yaml) are loaded from $SLAB_VALIDATE_NODE_MODULES (./validate installs them).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { BUILTIN, CUSTOM, LOCAL } from "./kinds.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.SLAB_VALIDATE_NODE_MODULES;
if (!modules) {
  console.error("SLAB_VALIDATE_NODE_MODULES is not set: run packaging/kubernetes/validate");
  process.exit(2);
}
const require = createRequire(path.join(modules, "noop.js"));
const Ajv = require("ajv");
const YAML = require("yaml");

const args = process.argv.slice(2);
const opts = { exclude: [], paths: [] };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--models-schema") opts.models = args[++i];
  else if (a === "--crd-dir") opts.crdDir = args[++i];
  else if (a === "--exclude") opts.exclude.push(path.resolve(args[++i]));
  else if (a === "--selftest") opts.selftest = args[++i];
  else if (a.startsWith("--")) { console.error(`unknown option ${a}`); process.exit(2); }
  else opts.paths.push(a);
}
if (!opts.models || !opts.crdDir || (!opts.selftest && opts.paths.length === 0)) {
  console.error("usage: node validate.mjs --models-schema K8S.json --crd-dir DIR [--exclude DIR]... PATH... | --selftest DIR");
  process.exit(2);
}

// ---- schemas -------------------------------------------------------------------------------

const ajv = new Ajv({ allErrors: true, verbose: true, strict: false, validateFormats: false, allowUnionTypes: true });
ajv.addSchema(JSON.parse(fs.readFileSync(opts.models, "utf8")));

// CRD schemas say nothing of unknown fields (the API server prunes them, kubectl refuses them):
// make every object that lists its properties refuse others, as strict field validation does,
// unless the schema keeps unknown fields on purpose.
function strictify(node) {
  if (Array.isArray(node)) { node.forEach(strictify); return node; }
  if (!node || typeof node !== "object") return node;
  if (node["x-kubernetes-int-or-string"]) {
    delete node.type;
    node.anyOf = [{ type: "integer" }, { type: "string" }];
  }
  if (node.properties && node.additionalProperties === undefined && !node["x-kubernetes-preserve-unknown-fields"]) {
    node.additionalProperties = false;
  }
  for (const key of ["properties", "patternProperties"]) {
    if (node[key]) Object.values(node[key]).forEach(strictify);
  }
  for (const key of ["items", "additionalProperties", "not"]) {
    if (node[key] && typeof node[key] === "object") strictify(node[key]);
  }
  for (const key of ["allOf", "anyOf", "oneOf"]) if (node[key]) strictify(node[key]);
  return node;
}

const validators = new Map();
function validatorFor(apiVersion, kind) {
  const key = `${apiVersion}/${kind}`;
  if (validators.has(key)) return validators.get(key);
  let schema;
  if (BUILTIN[key]) {
    schema = { $ref: `k8s#/definitions/${BUILTIN[key]}` };
  } else if (CUSTOM[key] || LOCAL[key]) {
    const file = CUSTOM[key] ? path.join(opts.crdDir, CUSTOM[key]) : path.join(here, LOCAL[key]);
    schema = JSON.parse(fs.readFileSync(file, "utf8"));
    if (CUSTOM[key]) {
      strictify(schema);
      schema.properties.metadata = { $ref: "k8s#/definitions/V1ObjectMeta" };
      schema.required = [...new Set([...(schema.required ?? []), "apiVersion", "kind", "metadata"])];
    }
  } else {
    validators.set(key, null);
    return null;
  }
  const v = ajv.compile(schema);
  validators.set(key, v);
  return v;
}

function describe(e) {
  const where = e.instancePath || "/";
  switch (e.keyword) {
    case "additionalProperties": return `${where}: unknown field "${e.params.additionalProperty}"`;
    case "required": return `${where}: missing required field "${e.params.missingProperty}"`;
    case "type": return `${where}: must be ${e.params.type} (got ${e.data === null ? "null" : Array.isArray(e.data) ? "array" : typeof e.data}${typeof e.data === "string" || typeof e.data === "number" || typeof e.data === "boolean" ? ` ${JSON.stringify(e.data)}` : ""})`;
    case "enum": return `${where}: must be one of ${e.params.allowedValues.map((x) => JSON.stringify(x)).join(", ")} (got ${JSON.stringify(e.data)})`;
    case "const": return `${where}: must be ${JSON.stringify(e.params.allowedValue)}`;
    default: return `${where}: ${e.message}`;
  }
}

// ---- checks beyond the schema ----------------------------------------------------------------

function imageProblems(obj, at = "") {
  const out = [];
  if (Array.isArray(obj)) {
    obj.forEach((x, i) => out.push(...imageProblems(x, `${at}/${i}`)));
  } else if (obj && typeof obj === "object") {
    for (const [k, v] of Object.entries(obj)) {
      if (["containers", "initContainers", "ephemeralContainers"].includes(k) && Array.isArray(v)) {
        v.forEach((c, i) => {
          const image = c && typeof c.image === "string" ? c.image : null;
          if (image === null) return;
          const last = image.split("/").pop();
          if (!image.includes("@sha256:") && (!last.includes(":") || last.endsWith(":latest"))) {
            out.push(`${at}/${k}/${i}/image: "${image}" is not pinned to a version tag or digest`);
          }
        });
      }
      out.push(...imageProblems(v, `${at}/${k}`));
    }
  }
  return out;
}

const CLUSTER_SCOPED = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "CSIDriver", "StorageClass",
  "VolumeAttributesClass", "PriorityClass", "PersistentVolume", "VolumeSnapshotClass", "VolumeGroupSnapshotClass"]);

function kustomizationProblems(file, doc) {
  const out = [];
  const dir = path.dirname(file);
  const listed = new Set();
  for (const r of Array.isArray(doc.resources) ? doc.resources : []) {
    if (typeof r !== "string") continue;
    const p = path.resolve(dir, r);
    if (!fs.existsSync(p)) out.push(`/resources: "${r}" does not exist`);
    listed.add(p);
  }
  for (const f of fs.readdirSync(dir)) {
    const p = path.resolve(dir, f);
    if (/\.ya?ml$/.test(f) && !/^kustomization\.ya?ml$/.test(f) && !listed.has(p)) {
      out.push(`/resources: ${f} is beside kustomization.yaml but not listed (kubectl apply -k would skip it)`);
    }
  }
  return out;
}

// ---- files -----------------------------------------------------------------------------------

function collect(p, acc) {
  const abs = path.resolve(p);
  if (opts.exclude.some((x) => abs === x || abs.startsWith(x + path.sep))) return acc;
  const st = fs.statSync(abs);
  if (st.isDirectory()) {
    for (const f of fs.readdirSync(abs).sort()) collect(path.join(abs, f), acc);
  } else if (/\.ya?ml$/.test(abs)) {
    acc.push(abs);
  }
  return acc;
}

// Returns { docs, errors: [string] } for one file; `seen` detects duplicates across files.
function validateFile(file, seen) {
  const rel = path.relative(process.cwd(), file) || file;
  const errors = [];
  let docs = 0;
  const text = fs.readFileSync(file, "utf8");
  // YAML 1.1 is what the Kubernetes tools parse (sigs.k8s.io/yaml): yes/no/on/off are booleans.
  const parsed = YAML.parseAllDocuments(text, { version: "1.1", uniqueKeys: true, prettyErrors: true });
  parsed.forEach((d, i) => {
    const tag = `${rel}: document ${i + 1}`;
    if (d.errors.length > 0) {
      for (const e of d.errors) errors.push(`${tag}: YAML: ${e.message.split("\n")[0]}`);
      return;
    }
    const obj = d.toJS({ maxAliasCount: 100 });
    if (obj === null || obj === undefined) return; // an empty document (a trailing ---)
    docs++;
    if (typeof obj !== "object" || Array.isArray(obj)) {
      errors.push(`${tag}: not an object`);
      return;
    }
    const name = obj.metadata && typeof obj.metadata === "object" ? obj.metadata.name : undefined;
    const what = `${tag} (${obj.kind ?? "?"}${name ? `/${name}` : ""})`;
    if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
      errors.push(`${what}: apiVersion and kind must be strings`);
      return;
    }
    const v = validatorFor(obj.apiVersion, obj.kind);
    if (!v) {
      errors.push(`${what}: no schema for apiVersion "${obj.apiVersion}" kind "${obj.kind}" (known: see validator/kinds.mjs)`);
      return;
    }
    if (!v(obj)) {
      const msgs = [...new Set(v.errors.map(describe))];
      for (const m of msgs) errors.push(`${what}: ${m}`);
    }
    const isKustomization = obj.kind === "Kustomization";
    if (!isKustomization && (typeof name !== "string" || name === "")) {
      errors.push(`${what}: /metadata: missing required field "name"`);
    }
    for (const m of imageProblems(obj)) errors.push(`${what}: ${m}`);
    if (isKustomization) {
      for (const m of kustomizationProblems(file, obj)) errors.push(`${what}: ${m}`);
    } else if (typeof name === "string") {
      const ns = CLUSTER_SCOPED.has(obj.kind) ? "" : (obj.metadata.namespace ?? "(default)");
      const key = `${obj.apiVersion.split("/")[0]}/${obj.kind}/${ns}/${name}`;
      if (seen.has(key)) errors.push(`${what}: also defined in ${seen.get(key)}`);
      else seen.set(key, rel);
    }
  });
  if (docs === 0 && errors.length === 0) errors.push(`${rel}: no Kubernetes object in the file`);
  return { docs, errors };
}

// ---- main ------------------------------------------------------------------------------------

if (opts.selftest) {
  // Every file in the selftest folder is a bad manifest that names, in "# expect: TEXT" lines,
  // the errors it must produce. The check fails if any file passes or misses an expected error,
  // so a validator that accepts everything cannot make CI green.
  const files = collect(opts.selftest, []);
  let passed = 0, failed = 0;
  for (const f of files) {
    const expects = [...fs.readFileSync(f, "utf8").matchAll(/^# expect: (.+)$/gm)].map((m) => m[1].trim());
    const { errors } = validateFile(f, new Map());
    const rel = path.relative(process.cwd(), f);
    const missing = expects.filter((x) => !errors.some((e) => e.includes(x)));
    if (expects.length === 0) {
      console.log(`FAIL ${rel}: has no "# expect:" line`); failed++;
    } else if (errors.length === 0) {
      console.log(`FAIL ${rel}: was accepted, but it is invalid`); failed++;
    } else if (missing.length > 0) {
      console.log(`FAIL ${rel}: rejected, but not for: ${missing.join(" | ")}\n  got: ${errors.join("\n  got: ")}`); failed++;
    } else {
      const short = errors.map((e) => (e.startsWith(`${rel}: `) ? e.slice(rel.length + 2) : e));
      console.log(`ok   ${rel}: rejected:\n       ${short.join("\n       ")}`); passed++;
    }
  }
  console.log(`selftest: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

const files = opts.paths.flatMap((p) => collect(p, []));
const seen = new Map();
let okDocs = 0, badDocs = 0;
const allErrors = [];
for (const f of files) {
  const { docs, errors } = validateFile(f, seen);
  const rel = path.relative(process.cwd(), f);
  if (errors.length === 0) {
    console.log(`ok   ${rel} (${docs} document${docs === 1 ? "" : "s"})`);
    okDocs += docs;
  } else {
    console.log(`FAIL ${rel}`);
    for (const e of errors) console.log(`  error: ${e}`);
    badDocs += Math.max(1, new Set(errors.map((e) => e.split(": ")[1])).size);
    okDocs += Math.max(0, docs - new Set(errors.map((e) => e.split(": ")[1])).size);
    allErrors.push(...errors);
  }
}
console.log(`manifests: ${okDocs} passed, ${badDocs} failed (${files.length} files)`);
process.exit(allErrors.length === 0 && files.length > 0 ? 0 : 1);
