"""App-code writers below the targets: the Kotlin snippet (edgekit.bundle.kotlin), the Swift snippet
(edgekit.bundle.swift) and model.json (edgekit.bundle.spec). A target's `packaging` entry calls them;
`edgekit package` (edgekit.package) puts the bundle together."""
