# Throughput of mqe2e relative to plain Paho, per payload size, QoS 0 and 1.
# Called by bench/run_all.sh:
#   gnuplot -e "data='ratios.dat'; out='throughput.png'; ttl='...'" bench/plot.gp
# Each data line: index "payload label" qos0_percent qos1_percent.
# Bars above the top of the axis are clipped at it, with their value written
# just below the top.
set terminal pngcairo size 960,540 font "sans,11"
set output out
set title ttl noenhanced
set ylabel "encrypted / plain messages per second (%)"
set xlabel "payload"
top = 150
set yrange [0:top]
set xrange [-0.6:3.6]
set ytics 0,25,top
set xtics nomirror scale 0
set grid ytics
set key top left box opaque
set style fill solid 0.85 border -1
set boxwidth 0.34
clip(v) = v > top ? top : v
lab(v) = v > top ? sprintf("%.0f%%", v) : sprintf("%.0f%%", v)
ly(v) = v > top ? top - 8 : v + 4
plot data using 1:(NaN):xtic(2) notitle, \
     data using ($1 - 0.18):(clip($3)) with boxes lc rgb "#1f77b4" title "QoS 0", \
     data using ($1 + 0.18):(clip($4)) with boxes lc rgb "#ff7f0e" title "QoS 1", \
     data using ($1 - 0.18):(ly($3)):(lab($3)) with labels font "sans,10" notitle, \
     data using ($1 + 0.18):(ly($4)):(lab($4)) with labels font "sans,10" notitle, \
     95 with lines lc rgb "#2ca02c" lw 2 dt 2 title "target 95% (QoS 0, 256 B)"
