"""Stage 2, consistency distillation (teacher forcing): a one-step student from the diffusion teacher.

The teacher takes one Euler step on a fixed grid of `teacher_steps` times (shifted like its training), no
classifier-free guidance; the student's x0 prediction at the earlier (noisier) time must match its own prediction,
without gradient, at the teacher's next time. AAPT uses no EMA target. At t = 0 the prediction is x_t itself, which
anchors the chain at the data; at t = 1 the student maps pure noise to a frame in one evaluation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from worldsim.diffusion.flow import add_noise, predict_x0, sampler_times
from worldsim.models.generator import Generator
from worldsim.training.clips import Clip


def consistency_loss(student: Generator, teacher: Generator, clip: Clip, teacher_steps: int, shift: float,
                     gen: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    recycled = clip.recycled_seen_by(student)  # the teacher is the student's stage-1 self: same reprojection
    x0 = student.to_output(clip.targets, recycled)
    B, Fr = x0.shape[:2]
    grid = sampler_times(teacher_steps, shift).to(x0.device)  # 1 = t_0 > ... > t_N = 0
    n = torch.randint(0, teacher_steps, (B,), generator=gen, device=x0.device)
    t_now, t_next = grid[n][:, None].expand(B, Fr), grid[n + 1][:, None].expand(B, Fr)
    noise = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
    x_now = add_noise(x0, noise, t_now)
    frame_cond, token_cond = clip.conditions
    aug = x0.new_zeros(B, Fr)
    with torch.no_grad():
        v_teacher = teacher(x_now, recycled, token_cond, frame_cond, t_now, aug)
        step = (t_next - t_now).reshape(B, Fr, 1, 1, 1)
        x_next = x_now + step * v_teacher
        target = predict_x0(x_next, student(x_next, recycled, token_cond, frame_cond, t_next, aug), t_next)
    torch.clear_autocast_cache()  # the student's weights cast without gradients above must be cast again below
    pred = predict_x0(x_now, student(x_now, recycled, token_cond, frame_cond, t_now, aug), t_now)
    loss = F.mse_loss(pred.float(), target.float())
    return loss, {"loss": loss.item(), "t_mean": t_now.mean().item()}
