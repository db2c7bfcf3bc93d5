"""What goes to the phone, installed as `edgekit.android_harness`: device profiles, the harness type
(how a benchmark program is pushed, run and read), the programs' output parsers, their host stand-ins,
and the adb client that drives them. It sits below the targets: a target declares its own harness
with these pieces, and nothing here imports a target."""
