// The kinds the validator knows, by "apiVersion/kind". Built-in kinds name the model class of the
// Kubernetes API (as @kubernetes/client-node names it); custom resources name a schema file under
// packaging/kubernetes/schemas/ (taken from the upstream CRD's openAPIV3Schema); local kinds name a
// schema file under validator/ (kustomize's file format is not a Kubernetes API object).
// A document of any other apiVersion/kind is an error: nothing passes unchecked.

export const BUILTIN = {
  "v1/Namespace": "V1Namespace",
  "v1/ServiceAccount": "V1ServiceAccount",
  "v1/ConfigMap": "V1ConfigMap",
  "v1/Secret": "V1Secret",
  "v1/Service": "V1Service",
  "v1/Pod": "V1Pod",
  "v1/PersistentVolumeClaim": "V1PersistentVolumeClaim",
  "v1/PersistentVolume": "V1PersistentVolume",
  "apps/v1/DaemonSet": "V1DaemonSet",
  "apps/v1/Deployment": "V1Deployment",
  "apps/v1/StatefulSet": "V1StatefulSet",
  "batch/v1/Job": "V1Job",
  "policy/v1/PodDisruptionBudget": "V1PodDisruptionBudget",
  "scheduling.k8s.io/v1/PriorityClass": "V1PriorityClass",
  "rbac.authorization.k8s.io/v1/ClusterRole": "V1ClusterRole",
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": "V1ClusterRoleBinding",
  "rbac.authorization.k8s.io/v1/Role": "V1Role",
  "rbac.authorization.k8s.io/v1/RoleBinding": "V1RoleBinding",
  "storage.k8s.io/v1/CSIDriver": "V1CSIDriver",
  "storage.k8s.io/v1/StorageClass": "V1StorageClass",
  "storage.k8s.io/v1/VolumeAttributesClass": "V1VolumeAttributesClass",
};

export const CUSTOM = {
  "snapshot.storage.k8s.io/v1/VolumeSnapshotClass": "snapshot.storage.k8s.io_v1_volumesnapshotclass.json",
  "snapshot.storage.k8s.io/v1/VolumeSnapshot": "snapshot.storage.k8s.io_v1_volumesnapshot.json",
  "groupsnapshot.storage.k8s.io/v1beta2/VolumeGroupSnapshotClass": "groupsnapshot.storage.k8s.io_v1beta2_volumegroupsnapshotclass.json",
  "groupsnapshot.storage.k8s.io/v1beta2/VolumeGroupSnapshot": "groupsnapshot.storage.k8s.io_v1beta2_volumegroupsnapshot.json",
};

export const LOCAL = {
  "kustomize.config.k8s.io/v1beta1/Kustomization": "kustomization.schema.json",
};

// Fields whose API type is resource.Quantity (an int or a string such as "10Gi", "100m"), which
// the generated models flatten to string. Class.property; maps of quantities are marked with {}.
export const QUANTITY = [
  "V1ResourceRequirements.limits{}", "V1ResourceRequirements.requests{}",
  "V1VolumeResourceRequirements.limits{}", "V1VolumeResourceRequirements.requests{}",
  "V1EmptyDirVolumeSource.sizeLimit",
  "V1PersistentVolumeSpec.capacity{}",
  "V1PersistentVolumeClaimStatus.capacity{}", "V1PersistentVolumeClaimStatus.allocatedResources{}",
  "V1PodSpec.overhead{}",
  "V1ContainerStatus.allocatedResources{}",
];
