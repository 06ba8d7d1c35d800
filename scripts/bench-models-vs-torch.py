#!/usr/bin/env python3
"""PyTorch's time for the FineTuneBench `models` cases, on one thread (run beside
`swift run -c release FineTuneBench models --threads 1` on the same machine and compare)."""
import time, torch, torch.nn as nn
torch.set_num_threads(1)

def step_time(model, make_loss, reps=3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    times = []
    for i in range(reps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = make_loss()
        loss.backward()
        opt.step()
        if i > 0: times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1000

def main():
    import torchvision
    x = torch.rand(8, 3, 224, 224) * 2 - 1; y = torch.randint(0, 1000, (8,))
    m = torchvision.models.resnet18(); m.train()
    print("resnet18_step_full   %.1f ms" % step_time(m, lambda: nn.functional.cross_entropy(m(x), y)))
    for n, p in m.named_parameters(): p.requires_grad = n.startswith("fc.")
    print("resnet18_step_frozen %.1f ms" % step_time(m, lambda: nn.functional.cross_entropy(m(x), y)))
    from transformers import BertConfig, BertForSequenceClassification
    b = BertForSequenceClassification(BertConfig(hidden_dropout_prob=0, attention_probs_dropout_prob=0)); b.train()
    ids = torch.randint(0, 30522, (8, 128)); labels = torch.randint(0, 2, (8,))
    print("bert_base_step_full  %.1f ms" % step_time(b, lambda: b(input_ids=ids, labels=labels).loss, reps=2))

if __name__ == "__main__":
    main()
