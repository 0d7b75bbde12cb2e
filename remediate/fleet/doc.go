// Package fleet bounds how many nodes of a fleet run a remediation action at
// the same time, with Kubernetes Leases (coordination.k8s.io/v1) as the
// slots: Leases <prefix>-0 … <prefix>-(N-1) in one namespace. A node holds
// one slot while it acts, renews it well inside the lease duration and clears
// it when the action ends; a slot whose holder stops renewing is free once
// its lease duration has passed, so a dead node cannot keep it.
//
// The client speaks the three REST verbs it needs over net/http (GET, POST,
// PUT with resourceVersion) rather than through client-go, which would cost
// every node several MiB of resident memory for the same requests. It fails
// closed: whenever the API server cannot be reached or refuses, no slot is
// taken and no action runs.
package fleet
