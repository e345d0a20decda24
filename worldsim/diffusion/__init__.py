"""Flow-matching noise math and samplers. No parameters: the network knows nothing of the schedule."""

from worldsim.diffusion.flow import add_noise, predict_x0, sample_times, sampler_times, shift_time, velocity_target

__all__ = ["add_noise", "predict_x0", "sample_times", "sampler_times", "shift_time", "velocity_target"]
