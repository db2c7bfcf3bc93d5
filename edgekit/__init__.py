"""edgekit: EfficientViT from PyTorch to verified on-device artifacts and on-device latencies.

The Python API is the library the `edgekit` command calls, one function per command, each taking a
frozen options dataclass (docs/python.md):

    import edgekit
    manifest = edgekit.export_artifact(edgekit.ExportOptions("b0-seg", resolution="512x1024"))
    edgekit.verify_artifact(manifest.artifact_dir)

The functions are named apart from the modules that hold them (`edgekit.export` is the module,
`edgekit.export_artifact` its function), since importing a submodule sets the package attribute of
its name. The names load on first use, so `import edgekit` (and `edgekit --help`) stays instant.
"""

__version__ = "0.1.0"

# public name -> (module, attribute)
_API = {
    "ExportOptions": ("edgekit.export", "ExportOptions"),
    "export_artifact": ("edgekit.export", "export"),
    "verify_artifact": ("edgekit.verify", "verify_artifact"),
    "require_passed": ("edgekit.verify", "require_passed"),
    "DebugOptions": ("edgekit.layer_debug", "DebugOptions"),
    "debug_artifact": ("edgekit.layer_debug", "debug_artifact"),
    "EvalOptions": ("edgekit.eval", "EvalOptions"),
    "evaluate_accuracy": ("edgekit.eval", "evaluate"),
    "PredictOptions": ("edgekit.predict", "PredictOptions"),
    "predict_images": ("edgekit.predict", "predict"),
    "DeviceVerifyOptions": ("edgekit.ondevice", "DeviceVerifyOptions"),
    "verify_on_device": ("edgekit.ondevice", "verify_on_device"),
    "PhoneOptions": ("edgekit.ondevice", "PhoneOptions"),
    "evaluate_on_device": ("edgekit.ondevice", "evaluate_on_device"),
    "ProfileOptions": ("edgekit.profile", "ProfileOptions"),
    "profile_artifacts": ("edgekit.profile", "profile"),
    "PackageOptions": ("edgekit.package", "PackageOptions"),
    "package_artifacts": ("edgekit.package", "package"),
    "SweepOptions": ("edgekit.sweep", "SweepOptions"),
    "run_sweep": ("edgekit.sweep", "sweep"),
    "run_cluster_sweep": ("edgekit.cluster", "sweep_cluster"),
    "read_manifest": ("edgekit.manifest", "read_manifest"),
    "open_runner": ("edgekit.runtime", "open_runner"),
    "list_variants": ("edgekit.info", "list_variants"),
    "list_targets": ("edgekit.targets", "describe_table"),
    "EdgekitError": ("edgekit.errors", "EdgekitError"),
    "VerificationFailed": ("edgekit.errors", "VerificationFailed"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    import importlib

    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
