"""Gameplay data from a real engine, in data-flow order:

    env.py / doom.py    the engine interface and its ViZDoom adapter (frames, poses, calibrated actions)
    policies.py         seeded scripted exploration; human.py: a person playing with keyboard and mouse
    record.py           the recording loop (record_cli.py: `worldsim record`)
    storage.py          chunked episodes written atomically, index.json, train/val split, the alignment rule
    dataset.py          training windows of frames or cached latents, with their actions and conditions

Nothing here is imported by `import worldsim.data`: reading a dataset never needs ViZDoom or pygame.
"""
