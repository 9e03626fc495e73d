package main

import (
	"fmt"
	"image/color"
	"os"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// densityChart draws the density run as a PNG at path: the start time of
// the Nth container, and the memory (PSS) per sandbox at each checkpoint,
// both against N, one above the other.
func densityChart(r *densityResults, path string) error {
	if len(r.starts) == 0 {
		return fmt.Errorf("no container started")
	}
	starts := make(plotter.XYs, len(r.starts))
	for i, d := range r.starts {
		starts[i] = plotter.XY{X: float64(i + 1), Y: d.Seconds()}
	}
	top := plot.New()
	top.Title.Text = "start (run -d) of the Nth idle container, VM templates on"
	top.X.Label.Text = "N (containers alive)"
	top.Y.Label.Text = "seconds"
	top.Y.Min = 0
	if err := addLine(top, "", starts, color.RGBA{B: 200, A: 255}); err != nil {
		return err
	}

	var med, lo, hi plotter.XYs
	for _, p := range r.points {
		v := append([]float64(nil), p.pss...)
		sort.Float64s(v)
		n := float64(p.n)
		lo = append(lo, plotter.XY{X: n, Y: v[0]})
		med = append(med, plotter.XY{X: n, Y: v[len(v)/2]})
		hi = append(hi, plotter.XY{X: n, Y: v[len(v)-1]})
	}
	bottom := plot.New()
	bottom.Title.Text = "memory per sandbox with N alive: QEMU + proxy PSS"
	bottom.X.Label.Text = "N (containers alive)"
	bottom.Y.Label.Text = "MiB"
	bottom.Y.Min = 0
	for _, l := range []struct {
		name string
		xys  plotter.XYs
		c    color.Color
	}{
		{"max", hi, color.RGBA{R: 200, A: 255}},
		{"median", med, color.RGBA{G: 140, A: 255}},
		{"min", lo, color.RGBA{B: 200, A: 255}},
	} {
		if err := addLine(bottom, l.name, l.xys, l.c); err != nil {
			return err
		}
	}
	for _, p := range []*plot.Plot{top, bottom} {
		p.X.Min = 0
		p.X.Max = float64(r.max)
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
	}

	img := vgimg.New(8*vg.Inch, 8*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 8, PadTop: vg.Millimeter * 4, PadBottom: vg.Millimeter * 4, PadLeft: vg.Millimeter * 4, PadRight: vg.Millimeter * 4}
	plots := [][]*plot.Plot{{top}, {bottom}}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// addLine adds a line with points to p, with a legend entry unless name
// is empty.
func addLine(p *plot.Plot, name string, xys plotter.XYs, c color.Color) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("plotting %s: %w", name, err)
	}
	l.Color, pts.Color = c, c
	pts.Radius = vg.Points(2)
	p.Add(l, pts)
	if name != "" {
		p.Legend.Add(name, l, pts)
	}
	return nil
}
