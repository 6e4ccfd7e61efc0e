"""Few-shot prompting (Brown et al. 2020), the X-shot baseline: nothing trains.

Each evaluation prompt becomes the task's instruction, then k solved examples drawn from the
training split (seeded, a fresh draw per prompt, as GPT-3's evaluation does), then the prompt
itself. The model scores or generates exactly as a fine-tuned one would. Long demonstrations
need room: raise `task.max_length`, since prompts longer than it lose their beginning.
"""

from dataclasses import dataclass, replace
from random import Random

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, register
from bench.tasks import continuation


@dataclass
class IclSchema(MethodSchema):
    lr: float = 0.0  # nothing trains
    shots: int = 4
    instruction: str | None = None  # None: the task's own
    separator: str = "\n\n"  # between instruction and examples


@register
class Icl(Method):
    name = "icl"
    schema = IclSchema
    trains = False

    def label(self, row):
        return f"{row.shots:g}-shot prompting"

    def check(self, cfg, family):
        if cfg.shots < 0:
            raise ConfigError("method.shots", cfg.shots, "a number of examples >= 0")
        if family.form != "text_to_text":
            return (
                f"few-shot prompting needs a model that reads prompts; the {family.name} family is an encoder "
                "with a new head"
            )
        return None

    def prepare(self, task, cfg, seed):
        rng = Random(seed)
        instruction = task.instruction if cfg.instruction is None else cfg.instruction

        def with_shots(e):
            demos = [
                (d.prompt or d.text) + continuation(d.prompt or d.text, task.completion(d))
                for d in rng.sample(task.train, cfg.shots)
            ]
            return replace(
                e, prompt=cfg.separator.join(([instruction] if instruction else []) + demos + [e.prompt or e.text])
            )

        # a model that was shown examples goes on to write the next one: the separator ends its answer
        return replace(
            task,
            validation=[with_shots(e) for e in task.validation],
            test=[with_shots(e) for e in task.test],
            stop=cfg.separator,
            given_test=task.test,
        )

    def apply(self, model, cfg, family, tokenizer):
        model.requires_grad_(False)
        return model

    def fit(self, model, loader, cfg, train_cfg, device, evaluate=None, log=None, monitor=None):
        from bench.train import TrainResult  # deferred: torch

        return TrainResult()  # no steps: the record's time says so

    def save(self, model, folder):
        folder.mkdir(parents=True, exist_ok=True)  # nothing per task beyond the prompt

    def load(self, model, cfg, family, tokenizer, folder):
        return self.apply(model, cfg, family, tokenizer)
