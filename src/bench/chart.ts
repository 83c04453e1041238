/** A hand-written SVG bar chart: groups of bars (one scale per group), median values with min–max whiskers. */

export interface Bar {
  label: string;
  median: number;
  min?: number;
  max?: number;
  color: string;
}

export interface BarGroup {
  title: string;
  unit: string;
  bars: Bar[];
  /** Printed under the group (e.g. a ratio). */
  note?: string;
}

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function formatValue(value: number): string {
  if (value >= 1000) return value.toFixed(0);
  if (value >= 100) return value.toFixed(1);
  return value.toFixed(2);
}

export function barChartSvg(title: string, subtitle: string, groups: readonly BarGroup[]): string {
  const groupWidth = 300;
  const barWidth = 70;
  const plotTop = 80;
  const plotHeight = 260;
  const width = groups.length * groupWidth + 40;
  const height = plotTop + plotHeight + 90;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="20" y="30" font-size="18" font-weight="bold">${escape(title)}</text>`,
    `<text x="20" y="52" font-size="12" fill="#555">${escape(subtitle)}</text>`,
  ];
  groups.forEach((group, g) => {
    const left = 20 + g * groupWidth;
    const top = Math.max(...group.bars.map((bar) => Math.max(bar.median, bar.max ?? 0)), 1e-9);
    const y = (value: number) => plotTop + plotHeight - (value / top) * plotHeight;
    const base = plotTop + plotHeight;
    parts.push(`<line x1="${left + 20}" y1="${base}" x2="${left + groupWidth - 20}" y2="${base}" stroke="#333"/>`);
    const gap = (groupWidth - 40 - group.bars.length * barWidth) / (group.bars.length + 1);
    group.bars.forEach((bar, b) => {
      const x = left + 20 + gap + b * (barWidth + gap);
      const h = base - y(bar.median);
      parts.push(`<rect x="${x.toFixed(1)}" y="${y(bar.median).toFixed(1)}" width="${barWidth}" height="${h.toFixed(1)}" fill="${bar.color}"/>`);
      if (bar.min !== undefined && bar.max !== undefined) {
        const cx = (x + barWidth / 2).toFixed(1);
        parts.push(`<line x1="${cx}" y1="${y(bar.min).toFixed(1)}" x2="${cx}" y2="${y(bar.max).toFixed(1)}" stroke="#222" stroke-width="1.5"/>`);
        for (const v of [bar.min, bar.max]) {
          parts.push(`<line x1="${(x + barWidth / 2 - 6).toFixed(1)}" y1="${y(v).toFixed(1)}" x2="${(x + barWidth / 2 + 6).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#222" stroke-width="1.5"/>`);
        }
      }
      parts.push(`<text x="${(x + barWidth / 2).toFixed(1)}" y="${(y(Math.max(bar.median, bar.max ?? 0)) - 6).toFixed(1)}" font-size="12" text-anchor="middle">${formatValue(bar.median)}</text>`);
      parts.push(`<text x="${(x + barWidth / 2).toFixed(1)}" y="${base + 16}" font-size="12" text-anchor="middle">${escape(bar.label)}</text>`);
    });
    parts.push(`<text x="${left + groupWidth / 2}" y="${base + 40}" font-size="14" font-weight="bold" text-anchor="middle">${escape(`${group.title} (${group.unit})`)}</text>`);
    if (group.note) parts.push(`<text x="${left + groupWidth / 2}" y="${base + 60}" font-size="12" fill="#555" text-anchor="middle">${escape(group.note)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
