"""Runtime: a world played one frame at a time.

Read in this order: `session` (WorldSession: reset / step / snapshot / restore, no pygame), `profile`
(window, frame rate, HUD and system keys from YAML), `timing` (per-stage frame times), `display` (the window,
`draw_world`, the player's and the developer's HUDs, the keys overlay), `help` (the keys the player is told
about), `recorder` (MP4 + action log, atomic), `loop` (events -> step -> draw -> flip -> tick) and `play_cli`
(`worldsim play`).

Reliability, each a small module the loop or the kiosk uses: `recovery` (NaN/inf frames rewound to a
snapshot), `pacing` (a lower, even frame rate when the generator falls behind), `kiosk` (attract mode, session
limit, quit combination as pure state machines), `heartbeat` (the player tells its supervisor it is alive),
`logs` (rotating, bounded log files), `supervisor` and `kiosk_cli` (`worldsim kiosk`: restart the player after
a crash or a hang).

Nothing is imported here: code that only needs a session (training, evaluation) does not pay for pygame.
"""
