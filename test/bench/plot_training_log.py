#!/usr/bin/env python3
"""Plot a trained version's curve from pgbert.training_log as an SVG (no plotting library).

    python test/bench/plot_training_log.py MODEL VERSION OUT.svg

Connects with the PG* environment. Draws the per-step training loss (thin line), its
moving average over 10 steps, the per-epoch validation loss (dots), and the learning rate
(dashed, right axis).
"""
import sys

import psycopg

model, version, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with psycopg.connect() as conn, conn.cursor() as cur:
    cur.execute("SELECT step, train_loss, learning_rate FROM pgbert.training_log "
                "WHERE name = %s AND version = %s AND learning_rate IS NOT NULL ORDER BY step", (model, version))
    steps = cur.fetchall()
    cur.execute("SELECT step, epoch, validation_loss, validation_accuracy FROM pgbert.training_log "
                "WHERE name = %s AND version = %s AND validation_loss IS NOT NULL ORDER BY step", (model, version))
    epochs = cur.fetchall()
if not steps:
    sys.exit("no training log for %s version %d" % (model, version))

W, H, L, R, T, B = 760, 380, 70, 80, 40, 50
max_step = max(s for s, _, _ in steps)
losses = [l for _, l, _ in steps] + [v for _, _, v, _ in epochs]
top = max(losses) * 1.05
max_lr = max(lr for _, _, lr in steps) or 1.0


def x(step):
    return L + (W - L - R) * step / max_step


def y(loss):
    return T + (H - T - B) * (1 - loss / top)


def y_lr(lr):
    return T + (H - T - B) * (1 - lr / max_lr)


def polyline(points, style):
    return '<polyline fill="none" %s points="%s"/>' % (style, " ".join("%.1f,%.1f" % p for p in points))


smooth = []
for i in range(len(steps)):
    window = steps[max(0, i - 9):i + 1]
    smooth.append((steps[i][0], sum(l for _, l, _ in window) / len(window)))
parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="14">%s version %d: training loss per step, validation loss per epoch, learning rate</text>'
         % (L, model, version)]
for k in range(6):
    v = top * k / 5
    parts.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>' % (L, W - R, y(v), y(v)))
    parts.append('<text x="%d" y="%.1f" text-anchor="end">%.2f</text>' % (L - 6, y(v) + 4, v))
    parts.append('<text x="%d" y="%.1f">%.1e</text>' % (W - R + 6, y_lr(max_lr * k / 5) + 4, max_lr * k / 5))
for k in range(6):
    st = round(max_step * k / 5)
    parts.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (x(st), H - B + 18, st))
parts.append('<text x="%d" y="%d" text-anchor="middle">optimizer step</text>' % ((L + W - R) // 2, H - 10))
parts.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black"/>' % (L, W - R, H - B, H - B))
parts.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black"/>' % (L, L, T, H - B))
parts.append(polyline([(x(s), y(l)) for s, l, _ in steps], 'stroke="#9ecae1" stroke-width="1"'))
parts.append(polyline([(x(s), y(l)) for s, l in smooth], 'stroke="#08519c" stroke-width="2"'))
parts.append(polyline([(x(s), y_lr(lr)) for s, _, lr in steps], 'stroke="#636363" stroke-dasharray="5,4"'))
for s, e, v, acc in epochs:
    parts.append('<circle cx="%.1f" cy="%.1f" r="5" fill="#e6550d"/>' % (x(s), y(v)))
    parts.append('<text x="%.1f" y="%.1f" text-anchor="end" fill="#e6550d">epoch %d: val loss %.3f, acc %.3f</text>'
                 % (x(s) - 8, y(v) - 8, e, v, acc))
legend = [("#9ecae1", "train loss (step)"), ("#08519c", "train loss (10-step mean)"), ("#e6550d", "validation loss"),
          ("#636363", "learning rate (right axis)")]
for i, (color, label) in enumerate(legend):
    parts.append('<rect x="%d" y="%d" width="12" height="4" fill="%s"/>' % (W - R - 190, T + 8 + 16 * i, color))
    parts.append('<text x="%d" y="%d">%s</text>' % (W - R - 172, T + 14 + 16 * i, label))
parts.append('</svg>')
with open(out, "w") as f:
    f.write("\n".join(parts) + "\n")
print("wrote", out)
