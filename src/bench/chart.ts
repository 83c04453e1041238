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

/** The opening of every chart: the svg element, a white background, the title and subtitle. */
function svgOpening(width: number, height: number, title: string, subtitle: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="20" y="30" font-size="18" font-weight="bold">${escape(title)}</text>`,
    `<text x="20" y="52" font-size="12" fill="#555">${escape(subtitle)}</text>`,
  ];
}

export function barChartSvg(title: string, subtitle: string, groups: readonly BarGroup[]): string {
  const groupWidth = 300;
  const barWidth = 70;
  const plotTop = 80;
  const plotHeight = 260;
  const width = groups.length * groupWidth + 40;
  const height = plotTop + plotHeight + 90;
  const parts = svgOpening(width, height, title, subtitle);
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

export interface ScatterSeries {
  label: string;
  color: string;
  /** Points joined by a line when `line` is set (a swept curve), else drawn alone. */
  points: { x: number; y: number; xError?: number; yError?: number; note?: string }[];
  line?: boolean;
}

export interface ScatterPanel {
  title: string;
  xLabel: string;
  yLabel: string;
  series: ScatterSeries[];
}

/** Side-by-side scatter panels (y from 0 to the largest value, x likewise), with ±error bars and a legend. */
export function scatterChartSvg(title: string, subtitle: string, panels: readonly ScatterPanel[]): string {
  const panelWidth = 420;
  const plot = { left: 60, top: 80, width: 330, height: 260 };
  const width = panels.length * panelWidth + 20;
  const legendRows = Math.max(...panels.map((panel) => panel.series.length));
  const height = plot.top + plot.height + 60 + legendRows * 18;
  const parts = svgOpening(width, height, title, subtitle);
  panels.forEach((panel, p) => {
    const left = p * panelWidth + plot.left;
    const all = panel.series.flatMap((series) => series.points);
    const xMax = Math.max(1e-9, ...all.map((point) => point.x + (point.xError ?? 0))) * 1.05;
    const yMax = Math.max(1e-9, ...all.map((point) => point.y + (point.yError ?? 0))) * 1.05;
    const sx = (x: number) => left + (x / xMax) * plot.width;
    const sy = (y: number) => plot.top + plot.height - (y / yMax) * plot.height;
    const base = plot.top + plot.height;
    parts.push(`<text x="${left}" y="${plot.top - 12}" font-size="14" font-weight="bold">${escape(panel.title)}</text>`);
    parts.push(`<line x1="${left}" y1="${base}" x2="${left + plot.width}" y2="${base}" stroke="#333"/>`);
    parts.push(`<line x1="${left}" y1="${plot.top}" x2="${left}" y2="${base}" stroke="#333"/>`);
    for (const fraction of [0, 0.5, 1]) {
      parts.push(`<text x="${sx(xMax * fraction).toFixed(1)}" y="${base + 16}" font-size="11" text-anchor="middle">${formatValue(xMax * fraction)}</text>`);
      parts.push(`<text x="${left - 6}" y="${(sy(yMax * fraction) + 4).toFixed(1)}" font-size="11" text-anchor="end">${formatValue(yMax * fraction)}</text>`);
    }
    parts.push(`<text x="${left + plot.width / 2}" y="${base + 34}" font-size="12" text-anchor="middle">${escape(panel.xLabel)}</text>`);
    parts.push(`<text x="${left - 45}" y="${plot.top + plot.height / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 ${left - 45} ${plot.top + plot.height / 2})">${escape(panel.yLabel)}</text>`);
    panel.series.forEach((series, s) => {
      if (series.line && series.points.length > 1) {
        const path = [...series.points].sort((a, b) => a.x - b.x).map((point) => `${sx(point.x).toFixed(1)},${sy(point.y).toFixed(1)}`).join(' ');
        parts.push(`<polyline points="${path}" fill="none" stroke="${series.color}" stroke-width="1.5"/>`);
      }
      for (const point of series.points) {
        const [x, y] = [sx(point.x), sy(point.y)];
        if (point.xError) parts.push(`<line x1="${sx(point.x - point.xError).toFixed(1)}" y1="${y.toFixed(1)}" x2="${sx(point.x + point.xError).toFixed(1)}" y2="${y.toFixed(1)}" stroke="${series.color}" stroke-opacity="0.6"/>`);
        if (point.yError) parts.push(`<line x1="${x.toFixed(1)}" y1="${sy(Math.max(0, point.y - point.yError)).toFixed(1)}" x2="${x.toFixed(1)}" y2="${sy(point.y + point.yError).toFixed(1)}" stroke="${series.color}" stroke-opacity="0.6"/>`);
        parts.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="4" fill="${series.color}"/>`);
        if (point.note) parts.push(`<text x="${(x + 6).toFixed(1)}" y="${(y - 6).toFixed(1)}" font-size="10" fill="#333">${escape(point.note)}</text>`);
      }
      const ly = base + 50 + s * 18;
      parts.push(`<circle cx="${left + 6}" cy="${ly - 4}" r="4" fill="${series.color}"/>`);
      parts.push(`<text x="${left + 16}" y="${ly}" font-size="12">${escape(series.label)}</text>`);
    });
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
