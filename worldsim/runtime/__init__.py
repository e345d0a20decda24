"""Runtime: a world played one frame at a time.

Read in this order: `session` (WorldSession: reset / step / snapshot / restore, no pygame), `profile`
(window, frame rate, HUD and system keys from YAML), `timing` (per-stage frame times), `display` (the window,
`draw_world` and `draw_hud`), `recorder` (MP4 + action log, atomic), `loop` (events -> step -> draw -> flip
-> tick) and `play_cli` (`worldsim play`). Nothing is imported here: code that only needs a session (training,
evaluation) does not pay for pygame.
"""
