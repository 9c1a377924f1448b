"""Sweeps that run anywhere: tasks, models, resumable storage, executors."""

from ._teacher_student import TeacherStudent, teacher_student

__all__ = ["TeacherStudent", "teacher_student"]
