# Throughput of mqe2e relative to plain Paho, per payload size, QoS 0 and 1,
# over the synchronous (MQTTClient) and the asynchronous (MQTTAsync) front.
# Called by bench/run_all.sh:
#   gnuplot -e "data='ratios.dat'; out='throughput.png'; ttl='...'" bench/plot.gp
# Each data line: index "payload label" sync_qos0 sync_qos1 async_qos0 async_qos1
# (percent; NaN for a cell that was not run).
# Bars above the top of the axis are clipped at it, with their value written
# just below the top.
set terminal pngcairo size 1200,560 font "sans,11"
set output out
set title ttl noenhanced
set ylabel "encrypted / plain messages per second (%)"
set xlabel "payload" offset 0,0.6
set bmargin 5
top = 150
set yrange [0:top]
set xrange [-0.6:3.6]
set ytics 0,25,top
set xtics nomirror scale 0
set grid ytics
set key below horizontal box
set style fill solid 0.85 border -1
w = 0.19
set boxwidth w
clip(v) = v > top ? top : v
lab(v) = sprintf("%.0f", v)
ly(v) = v > top ? top - 8 : v + 4
plot data using 1:(NaN):xtic(2) notitle, \
     data using ($1 - 1.5 * w):(clip($3)) with boxes lc rgb "#1f77b4" title "sync, QoS 0", \
     data using ($1 - 0.5 * w):(clip($4)) with boxes lc rgb "#ff7f0e" title "sync, QoS 1", \
     data using ($1 + 0.5 * w):(clip($5)) with boxes lc rgb "#9ecae1" title "async, QoS 0", \
     data using ($1 + 1.5 * w):(clip($6)) with boxes lc rgb "#fdae6b" title "async, QoS 1", \
     data using ($1 - 1.5 * w):(ly($3)):(lab($3)) with labels font "sans,9" notitle, \
     data using ($1 - 0.5 * w):(ly($4)):(lab($4)) with labels font "sans,9" notitle, \
     data using ($1 + 0.5 * w):(ly($5)):(lab($5)) with labels font "sans,9" notitle, \
     data using ($1 + 1.5 * w):(ly($6)):(lab($6)) with labels font "sans,9" notitle, \
     95 with lines lc rgb "#2ca02c" lw 2 dt 2 title "target 95% (QoS 0, 256 B)"
